"""Personal deadline calendars (ICS feeds) behind revocable addresses."""
