"""Sign-in with the platform an organisation already uses: WeCom, DingTalk or Feishu."""
