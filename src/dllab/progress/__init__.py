"""Class progress from the labs' self-checks: the kernel's event log, the learner's table, a hub's live view.

`events` (kernel side, stdlib only) writes `<work>/.dllab/progress.jsonl`; `report` prints it;
`forwarder` (a Jupyter server extension) sends new events to a hub's `progress` service;
`service` is that service (JupyterHub OAuth, SQLAlchemy) and `configure` registers it in a hub.
"""
