"""The header of one instance: the PS3.15 Annex E profile compiled into a tag table (`profile`),
applied element by element (`deidentify`), identifying text found by one scanner (`scanner`), a
user's deid recipe on top (`recipe`), deid imported in one place (`deidlib`)."""
