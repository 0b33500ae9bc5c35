"""What every serving target shares: the HTTP client and its one error mapping, the Open Inference Protocol, server
metrics, the task registry, the one deploy skeleton, the one base of the servers pack launches on this machine (local)
with their processes, and health."""
