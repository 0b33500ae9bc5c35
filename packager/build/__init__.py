"""The build pipeline (`pack build`): plan -> prepare (load, bind, eager reference) -> export/* behind the gate ->
measure -> record. `pipeline.build` runs it; nothing here imports a serving target."""
