"""The roster (党员名册): the members of each branch, entered once and used by every campaign."""
