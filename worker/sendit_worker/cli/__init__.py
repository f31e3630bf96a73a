"""The command line: `sendit` (`main`) and the adapters behind its commands: a pod of a batch's
Job (`pod`), a batch's progress (`status`), a SenditWatch scan (`watch`), sample data (`sample`);
the Kubernetes API client they share (`kubeapi`)."""
