"""Job sequencer: runs a job's step DAG for one part, one segment at a time per cobot.

Time is event time: each segment starts when the previous one finished (as the port reports it: a simulated
move finishes exactly at its planned end), not when the sequencer got round to noticing, so recorded step and
cycle times do not depend on how fast the host keeps up with a fast simulation. A step starts when the last
step it depends on (or its cobot's previous step) ended; event times more than MAX_BACKDATE behind the clock
(a host far behind the simulation) are replaced by the clock's time, and so is a step's event time after a
pause, a retry or a resumed part.

Steps on different cobots run in parallel once the steps they come `after` are done; a cobot runs one step at
a time (file order among ready steps). The sequencer is driven by `update()`, called whenever something may
have changed (a joint state, a service reply, a timer); it never blocks and reads time from the injected clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .config import Job, Step
from .plan import PART_STATE_PREFIX, Checkpoint, Confirm, Dwell, Move, Segment, SetIo, SkillPlan, SkillState
from .ports import Clock, CobotPort, Pending
from .reports import CycleReport, StepTiming

log = logging.getLogger(__name__)

MAX_BACKDATE = 30.0  # clock seconds: more lag than this means the host cannot keep up; use the clock
StepPlanner = Callable[[Step, int, np.ndarray], SkillPlan]
StepDone = Callable[[str, int, StepTiming, np.ndarray | None], None]


@dataclass(frozen=True)
class StepFailure:
    """Why a step could not go on."""

    step: str
    cobot: str
    skill: str
    reason: str
    time: float
    code: str = ""


@dataclass
class _Running:
    step: Step
    segments: tuple[Segment, ...]
    start: float
    start_q: np.ndarray
    index: int = 0
    pending: Pending | None = None
    dwell_until: float | None = None
    interrupted: bool = False
    t: float = 0.0   # event time at which the next segment starts


@dataclass
class PartProgress:
    """Where one part is: finished steps with their timings, and steps under way."""

    part: int
    run_id: str
    done: dict[str, StepTiming] = field(default_factory=dict)
    running: dict[str, _Running] = field(default_factory=dict)
    # Memos of lookups that only change when a step finishes or starts (done only grows within a part).
    ready: list[Step] = field(default_factory=list)
    ready_for: int = -1
    next_of: dict[str, tuple[tuple, tuple[int, Step] | None]] = field(default_factory=dict)


class JobSequencer:
    """Sequences the steps of one job for one part at a time over a set of cobot ports."""

    def __init__(
        self,
        cell: str,
        job_name: str,
        job: Job,
        ports: Mapping[str, CobotPort],
        planner: StepPlanner,
        clock: Clock,
        skill_state: dict[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        on_step_done: StepDone | None = None,
        max_backdate: float | None = None,
    ):
        missing = sorted({s.cobot for s in job.steps} - set(ports))
        if missing:
            raise ValueError(f"job '{job_name}': no port for cobot(s) {', '.join(missing)}")
        self.cell = cell
        self.job_name = job_name
        self.job = job
        self.ports = dict(ports)
        self.planner = planner
        self.clock = clock
        self._paused = False
        self.progress: PartProgress | None = None
        self.failure: StepFailure | None = None
        self.expected_q: dict[str, np.ndarray] = {}
        self.skill_state: dict[str, Any] = skill_state if skill_state is not None else {}
        self.max_backdate = MAX_BACKDATE if max_backdate is None else max_backdate
        # Plans made ahead, while the cobot is still busy: (part, step) -> (start q, plan, state keys read).
        self._plans: dict[tuple[int, str], tuple[np.ndarray, SkillPlan, dict[str, Any]]] = {}
        self._cobot_free: dict[str, float] = {}   # event time each cobot's last step ended
        self._part_t = -float("inf")
        self._not_before = -float("inf")
        self.on_checkpoint = on_checkpoint
        self.on_step_done = on_step_done
        self._index = {s.name: i for i, s in enumerate(job.steps)}
        self._dependents: dict[str, list[Step]] = {}
        for s in job.steps:
            for dep in s.after:
                self._dependents.setdefault(dep, []).append(s)

    # ------------------------------------------------------------------ state
    @property
    def paused(self) -> bool:
        """No new segment is dispatched (hold, suspend); segments in flight finish."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if self._paused and not value and self.progress is not None:
            now = self.clock.now()
            for run in self.progress.running.values():
                if run.pending is None and run.dwell_until is None:
                    run.t = max(run.t, now)   # the next segment starts now, not when the last one ended
            self._cobot_free = {c: max(t, now) for c, t in self._cobot_free.items()}
            self._not_before = now   # steps that became ready during the pause start now
        self._paused = value

    @property
    def active(self) -> bool:
        """A part is under way."""
        return self.progress is not None

    @property
    def in_flight(self) -> bool:
        """Some segment has been dispatched and has not finished."""
        if self.progress is None:
            return False
        return any(
            (r.pending is not None and not r.pending.done) or r.dwell_until is not None
            for r in self.progress.running.values()
        )

    def busy_cobots(self) -> set[str]:
        """Cobots running a step now."""
        if self.progress is None:
            return set()
        return {r.step.cobot for r in self.progress.running.values()}

    # ------------------------------------------------------------------ commands
    def start_part(self, part: int, run_id: str, done: Mapping[str, StepTiming] | None = None,
                   resume: bool = False) -> None:
        """Begin a part (or resume it with the steps already done, its skill state kept: it may have got part-way
        through a step); steps are dispatched on the next update."""
        if self.progress is not None:
            raise RuntimeError(f"part {self.progress.part} is still under way")
        self.failure = None
        resume = resume or bool(done)
        if not resume:  # a fresh part: no skill state of the previous part carries over (e.g. weld progress)
            for key in [k for k in self.skill_state if k.startswith(PART_STATE_PREFIX)]:
                del self.skill_state[key]
        self.progress = PartProgress(part=part, run_id=run_id, done=dict(done or {}))
        self._part_t = self._event_time(max([self._part_t, *self._cobot_free.values()]))
        if resume:  # a resumed part: its earlier steps ended in another session
            self._part_t = self.clock.now()
            self._not_before = self._part_t
        log.debug("part %d of run %s started (%d steps already done)", part, run_id, len(self.progress.done))

    def abandon(self) -> PartProgress | None:
        """Stop every cobot now and drop the part under way; returns what it had done."""
        for port in self.ports.values():
            port.stop()
        progress, self.progress = self.progress, None
        self.expected_q.clear()
        self._cobot_free.clear()
        self._plans.clear()
        self._part_t = self._not_before = self.clock.now()
        self.failure = None
        return progress

    def interrupt(self, only_process: bool = False) -> list[str]:
        """Stop cobots now, keeping the part: the running steps stopped will be redone from a safe point, process
        work (a seam) resuming where it stopped. `only_process`: only the steps doing process work now (the arc on);
        the others finish the segment they are in."""
        runs = list(self.progress.running.values()) if self.progress is not None else []
        if only_process:
            runs = [r for r in runs if not r.interrupted and self.in_process(r)]
        else:
            self._cobot_free.clear()
            self._plans.clear()
        stop = {r.step.cobot for r in runs} if only_process else set(self.ports)
        for cobot in stop:
            self.ports[cobot].stop()
        names = []
        for run in runs:
            if not run.interrupted:
                self._record_process(run)
            run.pending, run.dwell_until, run.interrupted = None, None, True
            names.append(run.step.name)
        return names

    def _checkpoint(self, updates: dict[str, Any]) -> None:
        """Record skill state; the callback commits it before the next segment is dispatched."""
        self.skill_state.update(updates)
        if self.on_checkpoint:
            self.on_checkpoint(updates)

    @staticmethod
    def in_process(run: _Running) -> bool:
        """The step is between switching a process tool on and off (the arc is, or is about to be, on)."""
        for seg in reversed(run.segments[:run.index + 1]):
            if isinstance(seg, SetIo) and seg.process:
                return seg.value
        return False

    def _record_process(self, run: _Running) -> None:
        """Record how far a step's process work got (a seam welded part-way), from the arm's measured position."""
        segs = run.segments
        k = min(run.index, len(segs) - 1)
        if k < 0 or not self.in_process(run):
            return
        record = None
        for j in range(k, -1, -1):
            seg = segs[j]
            if isinstance(seg, Move) and seg.process is not None:
                span = seg.process
                in_flight = j == run.index and run.pending is not None
                q = self.ports[run.step.cobot].joint_positions() if in_flight else None
                reached = span.reached(q) if in_flight else span.end
                record = (span.key, span.record(reached))
                break
            if isinstance(seg, SetIo) and seg.process:  # struck, no process move done: from the first one's start
                nxt = next((m for m in segs[j:] if isinstance(m, Move) and m.process is not None), None)
                span = nxt.process if nxt is not None else None
                if span is not None:
                    record = (span.key, span.record(span.start))
                break
        if record is not None:
            self._checkpoint({record[0]: record[1]})
            log.info("part %s: step %s stopped during process work: %s = %s",
                     self.progress.part if self.progress else "?", run.step.name, record[0], record[1])

    def interrupted_steps(self) -> list[Step]:
        """Running steps stopped by interrupt() or a failure, waiting to be redone."""
        if self.progress is None:
            return []
        failed = self.failure.step if self.failure else None
        return [r.step for r in self.progress.running.values() if r.interrupted or r.step.name == failed]

    def step_start_q(self, name: str) -> np.ndarray:
        """Where the cobot was when a running step started (its safe point)."""
        assert self.progress is not None
        return self.progress.running[name].start_q

    def restart_step(self, name: str, recovery: Sequence[Segment]) -> None:
        """Redo a running step from its start: the recovery segments (retract, return), then a fresh plan."""
        prog = self.progress
        assert prog is not None
        run = prog.running[name]
        t = self.clock.now()
        if self.failure is not None and self.failure.step == name:
            t = self._event_time(self.failure.time)  # the retry starts when the failure happened
            self.failure = None
        try:
            plan = self.planner(run.step, prog.part, run.start_q)
        except Exception as exc:  # noqa: BLE001 - any skill error becomes a step failure
            self._fail(run.step, f"cannot plan: {exc}", "SKILL_ERROR")
            return
        run.segments = tuple(recovery) + tuple(plan.segments)
        run.index, run.pending, run.dwell_until, run.interrupted = 0, None, None, False
        self.expected_q[run.step.cobot] = np.asarray(plan.end_q, dtype=float)
        run.t = t
        log.info("part %d: step %s restarted (%d recovery segments)", prog.part, name, len(recovery))

    def update(self) -> CycleReport | None:
        """Advance the part; returns its report when its last step finishes."""
        prog = self.progress
        if prog is None or self.failure is not None:
            return None
        for name in list(prog.running):
            self._advance(prog, prog.running[name])
            if self.failure is not None:
                return None
        if not self.paused:
            self._start_ready_steps(prog)
            if self.failure is not None:
                return None
        if not prog.running and len(prog.done) == len(self.job.steps):
            return self._finish(prog)
        return None

    # ------------------------------------------------------------------ internals
    def _ready(self, prog: PartProgress) -> list[Step]:
        """Steps not done whose `after` steps are all done, in file order; updated from the steps that finished
        since the last call (only their dependents can have become ready), so a step boundary costs O(1)."""
        done = prog.done
        if prog.ready_for < 0:
            prog.ready = [s for s in self.job.steps if s.name not in done and all(d in done for d in s.after)]
        elif prog.ready_for != len(done):
            names = {s.name for s in prog.ready}
            for finished in list(done)[prog.ready_for:]:
                for s in self._dependents.get(finished, ()):
                    if s.name not in done and s.name not in names and all(d in done for d in s.after):
                        prog.ready.append(s)
                        names.add(s.name)
            prog.ready = sorted((s for s in prog.ready if s.name not in done), key=lambda s: self._index[s.name])
        prog.ready_for = len(done)
        return prog.ready

    def _start_ready_steps(self, prog: PartProgress) -> None:
        started = True
        while started:
            started = False
            busy = self.busy_cobots()
            for step in self._ready(prog):
                if step.name in prog.running or step.cobot in busy:
                    continue
                self._start_step(prog, step)
                if self.failure is not None:
                    return
                started = True
                break

    def _event_time(self, t: float) -> float:
        now = self.clock.now()
        return t if now - self.max_backdate <= t <= now else now

    def _start_step(self, prog: PartProgress, step: Step) -> None:
        ready = [self._part_t, self._not_before, self._cobot_free.get(step.cobot, -float("inf"))]
        ready += [prog.done[d].end for d in step.after]
        now = self._event_time(max(ready))
        start_q = self.expected_q.get(step.cobot)
        if start_q is None:
            start_q = self.ports[step.cobot].joint_positions()
        if start_q is None:
            self._fail(step, f"no joint state from cobot '{step.cobot}'")
            return
        start_q = np.asarray(start_q, dtype=float)
        try:
            plan = self._plan(step, prog.part, start_q)
        except Exception as exc:  # noqa: BLE001 - any skill error becomes a step failure
            self._fail(step, f"cannot plan: {exc}", "SKILL_ERROR")
            return
        self.expected_q[step.cobot] = np.asarray(plan.end_q, dtype=float)
        run = _Running(step=step, segments=plan.segments, start=now, start_q=start_q, t=now)
        prog.running[step.name] = run
        log.debug("part %d: step %s started on %s (%d segments)", prog.part, step.name, step.cobot,
                  len(plan.segments))
        self._advance(prog, run)

    def _plan(self, step: Step, part: int, start_q: np.ndarray) -> SkillPlan:
        """The plan made ahead for this step, if it still holds; else plan now."""
        cached = self._plans.pop((part, step.name), None)
        if cached is not None:
            q0, plan, reads = cached
            if np.allclose(q0, start_q, rtol=0.0, atol=1e-9) and isinstance(self.skill_state, SkillState) \
                    and self.skill_state.unchanged(reads):
                return plan
        return self.planner(step, part, start_q)

    def _next_step_of(self, cobot: str, prog: PartProgress) -> tuple[int, Step] | None:
        key = (len(prog.done), tuple(prog.running))
        memo = prog.next_of.get(cobot)
        if memo is None or memo[0] != key:
            memo = prog.next_of[cobot] = (key, self._find_next_step_of(cobot, prog))
        return memo[1]

    def _find_next_step_of(self, cobot: str, prog: PartProgress) -> tuple[int, Step] | None:
        for step in self.job.steps:
            if step.cobot == cobot and step.name not in prog.done and step.name not in prog.running:
                return prog.part, step
        for step in self.job.steps:  # the cobot is done with this part: its first step of the next one
            if step.cobot == cobot:
                return prog.part + 1, step
        return None

    def preplan(self) -> bool:
        """Plan one cobot's next step ahead while it is busy (at most one plan per call); True if it did."""
        prog = self.progress
        if prog is None or self.failure is not None or not isinstance(self.skill_state, SkillState):
            return False
        for cobot, q in self.expected_q.items():
            target = self._next_step_of(cobot, prog)
            if target is None or (target[0], target[1].name) in self._plans:
                continue
            part, step = target
            try:
                with self.skill_state.recording() as reads:
                    plan = self.planner(step, part, q)
            except Exception:  # noqa: BLE001 - planned again, and reported, when the step starts
                self._plans[(part, step.name)] = (np.full_like(q, np.nan), None, {})  # type: ignore[arg-type]
                continue
            self._plans[(part, step.name)] = (q.copy(), plan, dict(reads))
            port = self.ports[step.cobot]
            for seg in plan.segments:
                if isinstance(seg, Move):
                    port.prepare(seg.trajectory)
            return True
        return False

    def _advance(self, prog: PartProgress, run: _Running) -> None:
        port = self.ports[run.step.cobot]
        if run.interrupted:
            return
        while True:
            if run.pending is not None:
                port.poll(run.pending)
                if not run.pending.done:
                    return
                seg = run.segments[run.index]
                if run.pending.error and isinstance(seg, SetIo) and seg.confirmed:
                    log.info("step %s: %s refused (%s); its state decides", run.step.name, seg.label,
                             run.pending.error)
                elif run.pending.error:
                    self._record_process(run)
                    self._fail(run.step, run.pending.error, run.pending.code, run.pending.finished_at)
                    return
                run.t = self._event_time(run.pending.finished_at if run.pending.finished_at is not None
                                         else self.clock.now())
                run.pending = None
                run.index += 1
            if run.dwell_until is not None:
                if self.clock.now() < run.dwell_until - 1e-9:
                    return
                run.t = self._event_time(run.dwell_until)
                run.dwell_until = None
                run.index += 1
            if run.index >= len(run.segments):
                self._step_done(prog, run)
                return
            if self.paused:
                return
            seg = run.segments[run.index]
            if isinstance(seg, Move):
                run.pending = port.move(seg.trajectory, start=run.t)
            elif isinstance(seg, SetIo):
                run.pending = port.set_io(seg.io, seg.value, start=run.t)
            elif isinstance(seg, Dwell):
                run.dwell_until = run.t + seg.seconds
            elif isinstance(seg, Confirm):
                run.pending = port.confirm(seg.io, seg.expected, seg.timeout, seg.code, start=run.t)
            elif isinstance(seg, Checkpoint):
                self._checkpoint(seg.updates())
                run.index += 1
            else:  # pragma: no cover - the Segment union is closed
                raise TypeError(f"unknown segment {seg!r}")

    def _step_done(self, prog: PartProgress, run: _Running) -> None:
        now = run.t
        s = run.step
        self._cobot_free[s.cobot] = now
        timing = StepTiming(step=s.name, skill=s.skill, cobot=s.cobot, start=run.start, end=now)
        prog.done[s.name] = timing
        del prog.running[s.name]
        if self.on_step_done:
            self.on_step_done(prog.run_id, prog.part, timing, self.expected_q.get(s.cobot))
        log.debug("part %d: step %s done in %.3f s", prog.part, s.name, now - run.start)

    def _fail(self, step: Step, reason: str, code: str = "", at: float | None = None) -> None:
        self.failure = StepFailure(step=step.name, cobot=step.cobot, skill=step.skill, reason=reason,
                                   time=self._event_time(at) if at is not None else self.clock.now(), code=code)
        log.warning("step %s on %s failed: %s", step.name, step.cobot, reason)

    def _finish(self, prog: PartProgress) -> CycleReport:
        report = self.report(prog, "done")
        self.progress = None
        return report

    def report(self, prog: PartProgress, status: str) -> CycleReport:
        """The cycle report of a part from the steps it has done (scrap: maybe none)."""
        order = {s.name: i for i, s in enumerate(self.job.steps)}
        steps = tuple(sorted(prog.done.values(), key=lambda t: (t.start, order[t.step])))
        now = self.clock.now()
        return CycleReport(
            cell=self.cell, job=self.job_name, run_id=prog.run_id, part=prog.part,
            start=min((t.start for t in steps), default=now), end=max((t.end for t in steps), default=now),
            status=status, steps=steps,
        )
