"""Domain core of dangjian-flow: organisations, templates, machines, runs and their records."""
