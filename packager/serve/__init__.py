"""What every serving target shares: the HTTP client and its one error mapping, the Open Inference Protocol, server
metrics, the task registry, the one deploy skeleton, the processes of local servers, and health."""
