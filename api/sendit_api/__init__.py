"""The contract between Sendit's operator and its worker: what both sides agree on, and nothing
heavy (PyYAML and jsonschema only). The operator imports this package and kopf; the worker
imports this package and its domain; neither imports the other.

- `names`: the API group, kinds, labels, annotations, mount paths, environment variables.
- `exits`: the worker's exit codes, as the Job's podFailurePolicy reads them.
- `errors`: the one error taxonomy: Permanent (a retry cannot help) or Transient (it can).
- `crd`: the CRDs as shipped, their schemas, defaults and validation.
- `spec`: a SenditBatch parsed once into typed, frozen objects.
- `status`: the status shape: phases, shard stages, counts, a shard's report.
"""
