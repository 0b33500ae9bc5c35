"""The FastAPI target: pack's own handler code (the code TorchServe runs) behind FastAPI + uvicorn, launched by pack on
loopback; the HTTP baseline of `pack bench`.

deploy / status / undeploy / stop     pack deploy|status|undeploy|stop --target fastapi (the deploy module; imported
                                      only when a command runs, so listing targets imports no server code)
"""
