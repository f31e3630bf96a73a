"""What identifiers become: keyed pseudonyms and the key (`pseudonyms`), and each patient's
replacement identifiers and date shift, from the key or an identifier service (`replacements`)."""
