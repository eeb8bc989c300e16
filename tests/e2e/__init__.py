"""Browser end-to-end tests (``ROOMKIT_E2E=1``)."""
