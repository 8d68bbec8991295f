"""Reading and validating the configuration files."""
