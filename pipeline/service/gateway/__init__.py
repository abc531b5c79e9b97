"""`pipeline gateway`: the last hop from the pipeline's ZeroMQ verdicts to a PLC.

A second daemon beside `pipeline run`: it subscribes to one or more pipelines, keeps a
per-camera result with a fail-safe "pipeline not ready" state (`state`), and writes it
to a PLC over Modbus/TCP (as client, `modbus_client`, or as server the PLC polls,
`modbus_server`) and/or serves it over OPC UA (`opcua_server`). docs/GATEWAY.md is the
contract with the PLC programmer: register map, node tree, handshake.

pymodbus and asyncua are the optional `gateway` extra; only the sink modules import
them, and `pipeline gateway` says what to install when they are missing.
"""
