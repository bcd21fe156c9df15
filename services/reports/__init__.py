"""The managers' live view and daily reports: a service of its own (archive), served by the API."""
