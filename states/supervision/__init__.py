"""The supervision group (督导组): findings that need a response, and 通报 to a subtree."""
