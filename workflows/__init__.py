"""Prefect flows for the timed work (deadline sweeps, escalations, bulletins); filled in later."""
