"""The job layer: every background job (a pruning or merging run, a study, a deploy check) is started, tracked,
reaped and cancelled here, one way, above the kinds of work it runs (:mod:`core.pruning`, :mod:`core.merging`,
:mod:`core.studies`, :mod:`core.deploy`) and the records they write (:mod:`core.runs`).

* :mod:`core.jobs.queue`     the store's one jobs table: a row per job of any kind (:class:`~core.jobs.queue.JobRow`)
* :mod:`core.jobs.schedule`  the scheduler: the slot claim (on submit, on a worker's exit, on liveness checks), the
  one liveness rule (pid and heartbeat), the one exit hook, cancelling a waiting job
* :mod:`core.jobs.slots`     how many heavy jobs run at once (``PRUNE_MAX_JOBS``; from cores and memory)
* :mod:`core.jobs.targets`   what each kind of job works on and how its records follow the job
* :mod:`core.jobs.estimate`  a waiting job's place in the queue and when it should start
* :mod:`core.jobs.launcher`  the one process start (environment, niceness, threads) and its reaper thread
* :mod:`core.jobs.kinds`     the kinds of job (prune, merge, study, deploy); a stored run's events by its kind
* :mod:`core.jobs.worker`    the worker process ``python -m core.jobs.worker KIND STORE ARGS...``: what each kind does
* :mod:`core.jobs.record`    :class:`~core.jobs.record.Job`: one record with one status enum for every kind
* :mod:`core.jobs.execute`   running one stored run in this process, recording its events
* :mod:`core.jobs.runner`    :class:`~core.jobs.runner.Runner`: runs submitted from the app (queued)
* :mod:`core.jobs.studies`, :mod:`core.jobs.deploy`  queueing and watching a study, a deploy check
* :mod:`core.jobs.liveness`  the reaper: jobs whose process died end as interrupted, their slots go on
* :mod:`core.jobs.cancel`    the one cancel path
"""
