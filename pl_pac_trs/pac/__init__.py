"""pac subpackage."""
