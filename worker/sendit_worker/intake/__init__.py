"""What comes in: which files are DICOM instances (`discovery`), and the batch's plan of them
(`planner`: one pass over the source, grouped Study > Series, dealt onto shards)."""
