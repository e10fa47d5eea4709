"""HTTP API, web pages and the `dangjian` command line."""
