"""Deployment check: ONNX export of a finished run's model with a parity check against PyTorch
(:mod:`core.deploy.onnx_export`), the side-by-side latency benchmark (:mod:`core.deploy.bench`) and the
body of the background job that runs either for the app (:mod:`core.deploy.worker`; :mod:`core.jobs.deploy`
starts it). Their records are typed: :mod:`core.deploy.records` (the parity record) and
:mod:`core.deploy.bench_result` (the benchmark's settings and result)."""
