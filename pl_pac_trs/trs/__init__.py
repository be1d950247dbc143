"""trs subpackage."""
