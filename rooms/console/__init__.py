"""The operator console in the Django admin: its admin pages, the operators' actions and the dashboard's reads."""
