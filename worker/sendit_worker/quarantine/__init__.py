"""Withheld images kept for review, not lost, and what a reviewer does with them.

`store` is the quarantine folder (each withheld image unchanged, why, a preview; the batch it
came from; the audit log); `rules` turns a reviewer's region or rule file into deid filter
rules, and saves one for the image's device; `review` releases (through the whole pipeline
again, delivered once) and rejects.
"""
