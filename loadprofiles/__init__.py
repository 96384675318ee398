"""loadprofiles."""
