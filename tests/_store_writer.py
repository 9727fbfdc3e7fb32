"""Helper for the run-log and llm-log tests: synthetic runs, and a script run as a subprocess.

Importable (``build_run_events``, ``EchoModel``...) and runnable::

    python tests/_store_writer.py run --db PATH --run-id ID [--members N] [--iterations K]
        [--go-file FILE] [--pause-after M]
    python tests/_store_writer.py llm-log --count N --threads T [--go-file FILE]

``run`` records one full synthetic run into the run log at ``--db``. With ``--go-file`` it
first waits until that file exists (so many writers start together). With ``--pause-after M``
it prints ``PAUSED <run id>`` once M member_done events are recorded and waits for a line on
stdin before going on. It prints ``DONE <run id>`` at the end.

``llm-log`` logs ``count`` responses from each of ``threads`` threads to llm's log database
(``LLM_USER_PATH``) with :func:`consortium_lab.gateway.llm_logs.log_to_llm` and prints each id.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from consortium_lab.engine.events import (
    ArbiterDelta,
    Event,
    IterationFinished,
    IterationStarted,
    MemberDelta,
    MemberDone,
    MemberFailed,
    RunFinished,
    RunStarted,
    SynthesisReady,
    Usage,
)

FAILING_MODEL = "flaky"


def member_model(index: int) -> str:
    return f"model-{index}"


def build_run_events(
    run_id: str,
    *,
    members: int = 3,
    iterations: int = 2,
    prompt: str = "What is the answer?",
    conversation_id: str | None = None,
    turn: int = 1,
    finish: bool = True,
) -> Iterator[Event]:
    """A full synthetic run: per iteration ``members`` answers (with deltas), one failed member
    ``flaky#1``, an arbiter synthesis; then ``run_finished`` (when ``finish``)."""
    config: dict[str, Any] = {
        "models": {member_model(i): 1 for i in range(members)} | {FAILING_MODEL: 1},
        "arbiter": "arbiter-model",
        "mode": "consortium",
        "max_iterations": iterations,
    }
    yield RunStarted(
        run_id=run_id, prompt=prompt, config=config, conversation_id=conversation_id, turn=turn
    )
    for iteration in range(1, iterations + 1):
        yield IterationStarted(run_id=run_id, iteration=iteration)
        for i in range(members):
            model = member_model(i)
            text = f"<answer>{model} says {iteration} to {prompt}</answer>"
            for piece in (text[:10], text[10:]):
                yield MemberDelta(
                    run_id=run_id, model=model, instance=1, iteration=iteration, text=piece
                )
            yield MemberDone(
                run_id=run_id,
                model=model,
                instance=1,
                iteration=iteration,
                text=text,
                answer=f"{model} says {iteration} to {prompt}",
                thought_process="thinking",
                reasoning="",
                confidence=0.5 + i / 100,
                latency_ms=100.0 + i,
                first_token_ms=10.0,
                usage=Usage(input_tokens=11, output_tokens=22),
                served_by=model,
                cached=i == 0,
                response_id=f"resp-{run_id}-{iteration}-{i}",
                cost=0.25,
                parse_warnings=["no confidence stated"],
            )
        yield MemberFailed(
            run_id=run_id,
            model=FAILING_MODEL,
            instance=1,
            iteration=iteration,
            error="HTTP 500 from provider",
            error_type="error",
            partial_text="par",
            latency_ms=5.0,
        )
        yield ArbiterDelta(run_id=run_id, model="arbiter-model", iteration=iteration, text="...")
        yield SynthesisReady(
            run_id=run_id,
            iteration=iteration,
            model="arbiter-model",
            synthesis=f"synthesis {iteration}",
            confidence=0.6 + iteration / 10,
            analysis="analysis",
            dissent="dissent",
            needs_iteration=iteration < iterations,
            refinement_areas=["area"] if iteration < iterations else [],
            ranking=list(range(1, members + 1)),
            warnings=[],
            raw="<synthesis>...</synthesis>",
            latency_ms=200.0,
            usage=Usage(input_tokens=100, output_tokens=50),
            served_by="arbiter-model",
            attempts=2,
            cost=1.5,
        )
        yield IterationFinished(
            run_id=run_id,
            iteration=iteration,
            confidence=0.6 + iteration / 10,
            will_continue=iteration < iterations,
        )
    if finish:
        yield RunFinished(run_id=run_id, iterations=iterations, confidence=0.6 + iterations / 10)


def expected_counts(members: int, iterations: int) -> dict[str, int]:
    """Rows one finished :func:`build_run_events` run leaves in each table."""
    return {
        "member_responses": iterations * (members + 1),
        "arbiter_decisions": iterations,
        # run_started + per iteration (started, members, failed, synthesis, finished) + finished
        "events": 1 + iterations * (members + 4) + 1,
    }


def wait_for_file(path: str | None, limit: float = 120.0) -> None:
    if not path:
        return
    deadline = time.monotonic() + limit
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"go file {path} never appeared")
        time.sleep(0.01)


def _run(args: argparse.Namespace) -> int:
    from consortium_lab.sinks.runlog import RunStore

    wait_for_file(args.go_file)
    store = RunStore(args.db)
    done = 0
    for event in build_run_events(
        args.run_id, members=args.members, iterations=args.iterations, prompt=args.prompt
    ):
        store.record(event, strict=True)
        if isinstance(event, MemberDone):
            done += 1
            if done == args.pause_after:
                print(f"PAUSED {args.run_id}", flush=True)
                sys.stdin.readline()
    store.close()
    print(f"DONE {args.run_id}", flush=True)
    return 0


# -- llm ----------------------------------------------------------------------------------------


def echo_model() -> Any:
    """A local llm model that answers ``echo: <prompt>`` without any network."""
    import llm

    class EchoModel(llm.Model):
        model_id = "consortium-lab-test-echo"
        can_stream = True

        def execute(self, prompt, stream, response, conversation):
            yield "echo: "
            yield prompt.prompt or ""

    return EchoModel()


def async_echo_model() -> Any:
    """The async counterpart of :func:`echo_model`."""
    import llm

    class AsyncEchoModel(llm.AsyncModel):
        model_id = "consortium-lab-test-echo-async"

        async def execute(self, prompt, stream, response, conversation):
            yield "echo: " + (prompt.prompt or "")

    return AsyncEchoModel()


def _llm_log(args: argparse.Namespace) -> int:
    from consortium_lab.gateway.llm_logs import log_to_llm

    model = echo_model()
    wait_for_file(args.go_file)
    failures: list[str] = []
    lock = threading.Lock()

    def work(thread: int) -> None:
        for i in range(args.count):
            response = model.prompt(f"{args.tag} thread {thread} prompt {i}")
            response.text()
            logged = log_to_llm(response)
            with lock:
                if logged is None:
                    failures.append(f"{thread}/{i}")
                else:
                    print(logged, flush=True)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"FAILED {failures}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--db", required=True)
    run.add_argument("--run-id", required=True)
    run.add_argument("--members", type=int, default=3)
    run.add_argument("--iterations", type=int, default=2)
    run.add_argument("--prompt", default="What is the answer?")
    run.add_argument("--go-file")
    run.add_argument("--pause-after", type=int, default=0)
    log = sub.add_parser("llm-log")
    log.add_argument("--count", type=int, default=5)
    log.add_argument("--threads", type=int, default=1)
    log.add_argument("--tag", default="process")
    log.add_argument("--go-file")
    args = parser.parse_args(argv)
    return _run(args) if args.command == "run" else _llm_log(args)


if __name__ == "__main__":
    raise SystemExit(main())
