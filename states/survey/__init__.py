"""群众评议 by survey: one-time codes and an open link, answered without logging in."""
