"""The public 公示 board of a branch: what it promised and did, published to the masses."""
