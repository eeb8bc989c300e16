"""What an event holds: the content kinds and their validation, and text every database can store."""
