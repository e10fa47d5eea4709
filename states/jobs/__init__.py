"""Background jobs with progress and an expiring download (the committee 台账 export)."""
