#!/usr/bin/env python3
"""End-to-end test of llmops.v1.PromptService and ExperimentService through Python
grpcio stubs.

The stubs are generated at run time from proto/llmops/v1/{prompts,experiments}.proto,
so this test checks the wire contract (field names, enums, status codes) as a non-Rust
client sees it. The experiment checks also assign users locally with GrowthBook's own
Python SDK and require the server to agree: the assignment hash is reproducible in
another language. A second server runs with `[auth] mode = "api_keys"` (its first
admin key from `llmops auth bootstrap`): keys are sent as bearer metadata, and the role
each RPC requires is read from the generated descriptors.

Usage (from anywhere; paths are resolved against the repo root):

    python tests/python/prompt_client_test.py              # full run, needs the server binary
    python tests/python/prompt_client_test.py --stubs-only # only generate and import the stubs

Environment:
    LLMOPS_BIN   server binary (default: target/debug/llmops)

Prints one `ok - name` / `not ok - name: reason` line per check and ends with
`python-client: N passed, M failed`; exits non-zero when M > 0.
"""

import importlib
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
PROTO_FILES = [
    "llmops/v1/prompts.proto",
    "llmops/v1/experiments.proto",
    "llmops/v1/evaluation.proto",
    "llmops/v1/providers.proto",
    "llmops/v1/generations.proto",
    # Imported by every service's proto: the roles each RPC requires.
    "llmops/v1/auth.proto",
]

RPC_TIMEOUT = 10.0
STARTUP_TIMEOUT = 30.0
PROMPT = "py-review"

# Set by generate_stubs().
pb2 = None
pb2_grpc = None
exp_pb2 = None
exp_pb2_grpc = None


# --------------------------------------------------------------------------- stubs


def generate_stubs(out_dir):
    """Runs grpc_tools.protoc on the protos into out_dir and imports the result."""
    global pb2, pb2_grpc, exp_pb2, exp_pb2_grpc, eval_pb2, eval_pb2_grpc, prov_pb2, prov_pb2_grpc
    global auth_pb2, auth_pb2_grpc, gen_pb2, gen_pb2_grpc
    os.makedirs(out_dir, exist_ok=True)
    wkt_include = str(importlib.resources.files("grpc_tools") / "_proto")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        "-I",
        wkt_include,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
    ] + ["proto/" + f for f in PROTO_FILES]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            "protoc failed (exit %d): %s" % (proc.returncode, (proc.stderr or proc.stdout).strip())
        )
    # Make llmops / llmops.v1 regular packages so they cannot be shadowed or merged
    # with some other `llmops` namespace package on sys.path.
    for pkg in ("llmops", os.path.join("llmops", "v1")):
        init = os.path.join(out_dir, pkg, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    sys.path.insert(0, out_dir)
    importlib.invalidate_caches()
    pb2 = importlib.import_module("llmops.v1.prompts_pb2")
    pb2_grpc = importlib.import_module("llmops.v1.prompts_pb2_grpc")
    exp_pb2 = importlib.import_module("llmops.v1.experiments_pb2")
    exp_pb2_grpc = importlib.import_module("llmops.v1.experiments_pb2_grpc")
    eval_pb2 = importlib.import_module("llmops.v1.evaluation_pb2")
    eval_pb2_grpc = importlib.import_module("llmops.v1.evaluation_pb2_grpc")
    prov_pb2 = importlib.import_module("llmops.v1.providers_pb2")
    prov_pb2_grpc = importlib.import_module("llmops.v1.providers_pb2_grpc")
    auth_pb2 = importlib.import_module("llmops.v1.auth_pb2")
    auth_pb2_grpc = importlib.import_module("llmops.v1.auth_pb2_grpc")
    gen_pb2 = importlib.import_module("llmops.v1.generations_pb2")
    gen_pb2_grpc = importlib.import_module("llmops.v1.generations_pb2_grpc")


# --------------------------------------------------------------------------- server


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_bin():
    path = os.environ.get("LLMOPS_BIN", "target/debug/llmops")
    if os.path.isabs(path):
        return path
    if os.path.exists(path):
        return os.path.abspath(path)
    return os.path.join(REPO_ROOT, path)


def log_tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(no server log: %s)" % e


def start_server(binary, port, data_dir, log_path, env=None):
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise RuntimeError("server binary %s not found or not executable (run `cargo build` first "
                           "or set LLMOPS_BIN)" % binary)
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(
            [
                binary,
                "serve",
                "--listen",
                "127.0.0.1:%d" % port,
                "--data-dir",
                data_dir,
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            cwd=REPO_ROOT,
            env=dict(os.environ, **(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()  # the child keeps its own descriptor


def wait_healthy(channel, proc, log_path):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise RuntimeError("server exited with status %d before becoming healthy; log:\n%s"
                               % (code, log_tail(log_path)))
        try:
            resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = "status %s" % health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        except grpc.RpcError as e:
            last = "%s: %s" % (e.code().name, e.details())
        time.sleep(0.2)
    raise RuntimeError("server not SERVING after %.0f s (last: %s); log:\n%s"
                       % (STARTUP_TIMEOUT, last, log_tail(log_path)))


def stop_server(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- helpers


def sval(s):
    from google.protobuf import struct_pb2

    return struct_pb2.Value(string_value=s)


def var(name, required, default=None, description=""):
    v = pb2.PromptVariable(
        name=name,
        type=pb2.VARIABLE_TYPE_STRING,
        required=required,
        description=description,
    )
    if default is not None:
        v.default_value.CopyFrom(sval(default))
    return v


def base_variables():
    return [
        var("language", True, description="programming language"),
        var("focus_area", False, default="bugs", description="what to look for"),
        var("code", True, description="the code to review"),
    ]


# 1.0.0 is one line with no trailing newline. 1.1.0 puts one new line in front of it,
# so the old line stays byte-identical (including its missing final newline) and the
# line diff is exactly one added line and nothing removed.
TEMPLATE_V1 = "Review this {{ language }} code for {{ focus_area }}: {{ code }}"
TEMPLATE_V11 = "Answer in a {{ tone }} tone.\n" + TEMPLATE_V1


def expect_status(code, fn):
    """Calls fn(), which must fail with grpc status `code`."""
    import grpc

    try:
        resp = fn()
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code.name, e.code().name, e.details())
        return
    raise AssertionError("expected %s, got success: %r" % (code.name, resp))


# --------------------------------------------------------------------------- checks


def make_checks(stub):
    import grpc

    state = {}

    def create_v1():
        resp = stub.CreatePromptVersion(
            pb2.CreatePromptVersionRequest(
                prompt_version=pb2.PromptVersion(
                    name=PROMPT,
                    version="1.0.0",
                    template=TEMPLATE_V1,
                    variables=base_variables(),
                    author="python-client",
                    commit_message="first version",
                )
            ),
            timeout=RPC_TIMEOUT,
        )
        pv = resp.prompt_version
        assert pv.id != "", "prompt_version.id is empty"
        assert pv.is_active is True, "prompt_version.is_active is %r, want True" % pv.is_active
        assert pv.name == PROMPT, "prompt_version.name is %r" % pv.name
        assert pv.version == "1.0.0", "prompt_version.version is %r" % pv.version

    def create_v11_and_diff():
        resp = stub.CreatePromptVersion(
            pb2.CreatePromptVersionRequest(
                prompt_version=pb2.PromptVersion(
                    name=PROMPT,
                    version="1.1.0",
                    template=TEMPLATE_V11,
                    variables=base_variables()
                    + [var("tone", False, default="neutral", description="tone of the answer")],
                    author="python-client",
                    commit_message="add tone",
                )
            ),
            timeout=RPC_TIMEOUT,
        )
        pv = resp.prompt_version
        assert pv.id != "", "1.1.0 prompt_version.id is empty"
        assert pv.is_active is False, "1.1.0 is_active is %r; the first version should stay active" % (
            pv.is_active,
        )
        diff = stub.DiffPromptVersions(
            pb2.DiffPromptVersionsRequest(name=PROMPT, from_version="1.0.0", to_version="1.1.0"),
            timeout=RPC_TIMEOUT,
        )
        state["diff"] = diff
        lines = diff.unified_diff.splitlines()
        added = [l for l in lines if l.startswith("+") and not l.startswith("+++")]
        removed = [l for l in lines if l.startswith("-") and not l.startswith("---")]
        assert len(added) == 1, "want exactly 1 added line, got %d in diff:\n%s" % (
            len(added),
            diff.unified_diff,
        )
        assert added[0] == "+Answer in a {{ tone }} tone.", "unexpected added line %r" % added[0]
        assert not removed, "want no removed lines, got %r in diff:\n%s" % (removed, diff.unified_diff)
        tone = [
            c
            for c in diff.variable_changes
            if c.name == "tone" and c.kind == pb2.VARIABLE_CHANGE_KIND_ADDED
        ]
        assert tone, "no VARIABLE_CHANGE_KIND_ADDED change for `tone` in variable_changes: %s" % (
            [(c.name, pb2.VariableChangeKind.Name(c.kind)) for c in diff.variable_changes],
        )

    def diff_counts():
        diff = state.get("diff")
        assert diff is not None, "no diff (previous check failed)"
        assert diff.lines_added == 1, "lines_added is %d, want 1" % diff.lines_added
        assert diff.lines_removed == 0, "lines_removed is %d, want 0" % diff.lines_removed

    def render_exact_version():
        resp = stub.RenderPrompt(
            pb2.RenderPromptRequest(
                name=PROMPT,
                version="1.0.0",
                variables={"language": sval("Go"), "code": sval("func main() {}")},
            ),
            timeout=RPC_TIMEOUT,
        )
        want = "Review this Go code for bugs: func main() {}"
        assert resp.text == want, "text is %r, want %r" % (resp.text, want)
        assert resp.version == "1.0.0", "version is %r, want '1.0.0'" % resp.version

    def render_active_version():
        resp = stub.RenderPrompt(
            pb2.RenderPromptRequest(
                name=PROMPT,
                variables={"language": sval("Go"), "code": sval("func main() {}")},
            ),
            timeout=RPC_TIMEOUT,
        )
        assert resp.version == "1.0.0", "version is %r, want the active '1.0.0'" % resp.version
        want = "Review this Go code for bugs: func main() {}"
        assert resp.text == want, "text is %r, want %r" % (resp.text, want)

    def render_missing_required():
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stub.RenderPrompt(
                pb2.RenderPromptRequest(name=PROMPT, version="1.0.0"), timeout=RPC_TIMEOUT
            ),
        )

    def create_duplicate():
        expect_status(
            grpc.StatusCode.ALREADY_EXISTS,
            lambda: stub.CreatePromptVersion(
                pb2.CreatePromptVersionRequest(
                    prompt_version=pb2.PromptVersion(
                        name=PROMPT,
                        version="1.0.0",
                        template=TEMPLATE_V1,
                        variables=base_variables(),
                    )
                ),
                timeout=RPC_TIMEOUT,
            ),
        )

    def create_bad_semver():
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stub.CreatePromptVersion(
                pb2.CreatePromptVersionRequest(
                    prompt_version=pb2.PromptVersion(
                        name=PROMPT,
                        version="not-semver",
                        template=TEMPLATE_V1,
                        variables=base_variables(),
                    )
                ),
                timeout=RPC_TIMEOUT,
            ),
        )

    def get_unknown_prompt():
        expect_status(
            grpc.StatusCode.NOT_FOUND,
            lambda: stub.GetPromptVersion(
                pb2.GetPromptVersionRequest(name="py-no-such-prompt"), timeout=RPC_TIMEOUT
            ),
        )

    return [
        ("create 1.0.0 is active with id", create_v1),
        ("create 1.1.0 diff adds one line and variable tone", create_v11_and_diff),
        ("diff lines_added/lines_removed", diff_counts),
        ("render 1.0.0 with default focus_area", render_exact_version),
        ("render without version/label uses active 1.0.0", render_active_version),
        ("render missing required variables is INVALID_ARGUMENT", render_missing_required),
        ("create duplicate 1.0.0 is ALREADY_EXISTS", create_duplicate),
        ("create version not-semver is INVALID_ARGUMENT", create_bad_semver),
        ("get unknown prompt is NOT_FOUND", get_unknown_prompt),
    ]


# --------------------------------------------------------------------------- runner


def make_experiment_checks(stub):
    """Checks of ExperimentService; assignment is compared with GrowthBook's SDK."""
    import grpc
    from growthbook.core import chooseVariation, gbhash, getBucketRanges

    experiment_id = "py-ab"
    weights = [0.3, 0.7]
    coverage = 0.8
    seed = "py-seed"

    def create_and_start():
        experiment = exp_pb2.Experiment(
            id=experiment_id,
            name="python client",
            seed=seed,
            coverage=coverage,
            variants=[
                exp_pb2.Variant(id="control", weight=weights[0]),
                exp_pb2.Variant(id="treatment", weight=weights[1]),
            ],
            metrics=[
                exp_pb2.MetricDefinition(
                    name="converted",
                    kind=exp_pb2.METRIC_KIND_PROPORTION,
                    direction=exp_pb2.METRIC_DIRECTION_HIGHER_IS_BETTER,
                    role=exp_pb2.METRIC_ROLE_PRIMARY,
                )
            ],
        )
        created = stub.CreateExperiment(
            exp_pb2.CreateExperimentRequest(experiment=experiment), timeout=RPC_TIMEOUT
        ).experiment
        assert created.status == exp_pb2.EXPERIMENT_STATUS_DRAFT, created.status
        started = stub.StartExperiment(
            exp_pb2.StartExperimentRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT
        ).experiment
        assert started.status == exp_pb2.EXPERIMENT_STATUS_RUNNING, started.status

    def assignment_matches_growthbook_sdk():
        ranges = getBucketRanges(2, coverage, weights)
        users = ["user-%d" % i for i in range(150)] + ["ünïcødé-%d-€" % i for i in range(50)]
        for user in users:
            n = gbhash(seed, user, 2)
            expected = chooseVariation(n, ranges)
            answer = stub.AssignVariant(
                exp_pb2.AssignVariantRequest(experiment_id=experiment_id, user_id=user),
                timeout=RPC_TIMEOUT,
            )
            assert abs(answer.bucket - n) < 1e-12, "%s: bucket %r vs SDK %r" % (user, answer.bucket, n)
            assert answer.in_experiment == (expected >= 0), user
            if expected >= 0:
                want = ["control", "treatment"][expected]
                assert answer.variant.id == want, "%s: %s vs SDK %s" % (user, answer.variant.id, want)

    def proportion_values_are_zero_or_one():
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stub.RecordMetric(
                exp_pb2.RecordMetricRequest(
                    experiment_id=experiment_id, variant_id="control", metric="converted", value=0.5
                ),
                timeout=RPC_TIMEOUT,
            ),
        )

    def results_report_srm_and_a_recommendation():
        records = [
            exp_pb2.RecordMetricRequest(
                experiment_id=experiment_id,
                variant_id=["control", "treatment"][i % 2],
                metric="converted",
                value=float(i % 3 == 0),
            )
            for i in range(40)
        ]
        recorded = stub.RecordMetrics(exp_pb2.RecordMetricsRequest(records=records), timeout=RPC_TIMEOUT)
        assert recorded.recorded == 40, recorded
        results = stub.GetExperimentResults(
            exp_pb2.GetExperimentResultsRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT
        )
        assert results.HasField("srm"), results
        assert results.recommendation == "Continue experiment - insufficient confidence", results.recommendation
        assert len(results.comparisons) == 1 and results.comparisons[0].metric == "converted"

    return [
        ("experiment: create and start", create_and_start),
        ("experiment: assignment equals the growthbook SDK", assignment_matches_growthbook_sdk),
        ("experiment: proportions take 0 or 1", proportion_values_are_zero_or_one),
        ("experiment: results carry SRM and a recommendation", results_report_srm_and_a_recommendation),
    ]


def make_evaluation_checks(stub, prompts):
    """Checks of EvaluationService runs: an offline run with the built-in echo model,
    followed live with WatchRun, its results, and the error codes a client relies on."""
    import grpc
    from google.protobuf import struct_pb2

    state = {}

    def run_with_echo_and_watch_it():
        prompts.CreatePromptVersion(
            pb2.CreatePromptVersionRequest(
                prompt_version=pb2.PromptVersion(
                    name="py-echo", version="1.0.0", template="Answer: {{ input }}"
                )
            ),
            timeout=RPC_TIMEOUT,
        )
        dataset = stub.CreateDataset(
            eval_pb2.CreateDatasetRequest(dataset=eval_pb2.Dataset(name="py-golden")),
            timeout=RPC_TIMEOUT,
        ).dataset
        samples = [
            eval_pb2.Sample(id="s%d" % i, input=struct_pb2.Value(string_value=str(i)),
                            expected_output="Answer: %d" % (i if i % 4 else i + 1))
            for i in range(20)
        ]
        stub.AddSamples(eval_pb2.AddSamplesRequest(dataset_id=dataset.id, samples=samples),
                        timeout=RPC_TIMEOUT)
        run = stub.CreateRun(
            eval_pb2.CreateRunRequest(run=eval_pb2.Run(
                dataset_id=dataset.id, prompt_name="py-echo", model="echo",
                metrics=[eval_pb2.MetricConfig(name="exact", scorer="exact_match")],
            )),
            timeout=RPC_TIMEOUT,
        ).run
        assert run.status == eval_pb2.RUN_STATUS_PENDING, run.status
        assert run.metrics[0].threshold == 0.7, run.metrics[0].threshold
        stub.StartRun(eval_pb2.StartRunRequest(run_id=run.id), timeout=RPC_TIMEOUT)
        states = list(stub.WatchRun(eval_pb2.WatchRunRequest(run_id=run.id), timeout=60))
        final = states[-1].run
        assert final.status == eval_pb2.RUN_STATUS_COMPLETED, final.status
        assert final.prompt_version == "1.0.0", final.prompt_version
        results = final.results
        # Samples 0, 4, 8, 12, 16 expect the wrong answer.
        assert (results.total, results.passed, results.failed) == (20, 15, 5), results
        assert abs(results.pass_rate - 0.75) < 1e-12, results.pass_rate
        assert results.failure_reasons["exact below 0.7"] == 5, dict(results.failure_reasons)
        state["run"] = final

    def failed_results_page_in_dataset_order():
        run = state["run"]
        page = stub.ListRunResults(
            eval_pb2.ListRunResultsRequest(run_id=run.id, failed_only=True, page_size=3),
            timeout=RPC_TIMEOUT,
        )
        ids = [r.sample_id for r in page.results]
        assert ids == ["s0", "s4", "s8"], ids
        assert page.next_page_token != ""
        rest = stub.ListRunResults(
            eval_pb2.ListRunResultsRequest(run_id=run.id, failed_only=True, page_size=3,
                                           page_token=page.next_page_token),
            timeout=RPC_TIMEOUT,
        )
        assert [r.sample_id for r in rest.results] == ["s12", "s16"]
        assert rest.results[0].output == "Answer: 12", rest.results[0].output

    def error_codes():
        cases = [
            (grpc.StatusCode.NOT_FOUND,
             lambda: stub.GetRun(eval_pb2.GetRunRequest(run_id="missing"), timeout=RPC_TIMEOUT)),
            (grpc.StatusCode.FAILED_PRECONDITION,
             lambda: stub.StartRun(eval_pb2.StartRunRequest(run_id=state["run"].id),
                                   timeout=RPC_TIMEOUT)),
            (grpc.StatusCode.INVALID_ARGUMENT,
             lambda: stub.CreateRun(eval_pb2.CreateRunRequest(run=eval_pb2.Run()),
                                    timeout=RPC_TIMEOUT)),
        ]
        for code, call in cases:
            expect_status(code, call)

    return [
        ("evaluation run with echo, followed by WatchRun", run_with_echo_and_watch_it),
        ("failed results paged in dataset order", failed_results_page_in_dataset_order),
        ("evaluation error codes", error_codes),
    ]


def make_continuous_checks(stub, prompts, providers):
    """Checks of continuous evaluation: a schedule that fires by itself, pausing and
    deleting it, a release gate that refuses, allows and is overridden (with the
    override in the label history), and provider selection."""
    import grpc
    from google.protobuf import struct_pb2

    state = {}

    def setup():
        for version, template in (("1.0.0", "{{ input }}"), ("1.1.0", "I think {{ input }}")):
            prompts.CreatePromptVersion(
                pb2.CreatePromptVersionRequest(
                    prompt_version=pb2.PromptVersion(
                        name="py-gated", version=version, template=template
                    )
                ),
                timeout=RPC_TIMEOUT,
            )
        dataset = stub.CreateDataset(
            eval_pb2.CreateDatasetRequest(dataset=eval_pb2.Dataset(name="py-gate-set")),
            timeout=RPC_TIMEOUT,
        ).dataset
        stub.AddSamples(
            eval_pb2.AddSamplesRequest(
                dataset_id=dataset.id,
                samples=[eval_pb2.Sample(id="a", input=struct_pb2.Value(string_value="x"),
                                         expected_output="x")],
            ),
            timeout=RPC_TIMEOUT,
        )
        state["dataset"] = dataset.id

    def template():
        return eval_pb2.Run(
            dataset_id=state["dataset"], prompt_name="py-gated", model="echo",
            metrics=[eval_pb2.MetricConfig(name="exact", scorer="exact_match")],
        )

    def wait_for_runs(schedule_id, count):
        deadline = time.monotonic() + 30
        while True:
            schedule = stub.GetSchedule(
                eval_pb2.GetScheduleRequest(schedule_id=schedule_id), timeout=RPC_TIMEOUT
            ).schedule
            if schedule.runs_started >= count:
                return schedule
            assert time.monotonic() < deadline, "schedule never ran: %s" % schedule
            time.sleep(0.1)

    def schedule_fires_pauses_and_is_deleted():
        setup()
        created = stub.ScheduleRun(
            eval_pb2.ScheduleRunRequest(run_template=template(), schedule="@every 1s"),
            timeout=RPC_TIMEOUT,
        ).schedule
        assert created.HasField("next_run_at"), created
        fired = wait_for_runs(created.id, 1)
        assert fired.last_run_id, fired
        paused = stub.PauseSchedule(
            eval_pb2.PauseScheduleRequest(schedule_id=created.id), timeout=RPC_TIMEOUT
        ).schedule
        assert paused.paused and not paused.HasField("next_run_at"), paused
        listed = stub.ListSchedules(eval_pb2.ListSchedulesRequest(), timeout=RPC_TIMEOUT)
        assert created.id in [s.id for s in listed.schedules]
        stub.DeleteSchedule(eval_pb2.DeleteScheduleRequest(schedule_id=created.id),
                            timeout=RPC_TIMEOUT)
        expect_status(grpc.StatusCode.NOT_FOUND, lambda: stub.GetSchedule(
            eval_pb2.GetScheduleRequest(schedule_id=created.id), timeout=RPC_TIMEOUT))
        expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: stub.ScheduleRun(
            eval_pb2.ScheduleRunRequest(run_template=template(), schedule="61 * * * *"),
            timeout=RPC_TIMEOUT))

    def gate_refuses_allows_and_records_an_override():
        stub.SetReleaseGate(
            eval_pb2.SetReleaseGateRequest(gate=eval_pb2.ReleaseGate(
                prompt_name="py-gated", label="production", dataset_id=state["dataset"],
                model="echo", min_pass_rate=0.9,
            )),
            timeout=RPC_TIMEOUT,
        )

        def label(version, reason=""):
            return prompts.SetPromptLabel(
                pb2.SetPromptLabelRequest(name="py-gated", label="production",
                                          version=version, override_reason=reason),
                timeout=RPC_TIMEOUT,
            )

        # 1.1.0 has no run yet (the schedule above evaluated the active 1.0.0).
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, lambda: label("1.1.0"))
        for version in ("1.0.0", "1.1.0"):
            run = template()
            run.prompt_version = version
            run = stub.CreateRun(eval_pb2.CreateRunRequest(run=run), timeout=RPC_TIMEOUT).run
            stub.StartRun(eval_pb2.StartRunRequest(run_id=run.id), timeout=RPC_TIMEOUT)
            list(stub.WatchRun(eval_pb2.WatchRunRequest(run_id=run.id), timeout=60))
        label("1.0.0")
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, lambda: label("1.1.0"))
        label("1.1.0", reason="py override")
        history = prompts.ListLabelHistory(
            pb2.ListLabelHistoryRequest(name="py-gated", label="production"),
            timeout=RPC_TIMEOUT,
        ).events
        last = history[-1]
        assert last.override_reason == "py override", last
        assert last.previous_version == "1.0.0", last
        assert last.prompt_version.version == "1.1.0", last

    def providers_select_echo_when_named():
        listed = providers.ListProviders(prov_pb2.ListProvidersRequest(), timeout=RPC_TIMEOUT)
        # all() holds for an empty list, so the list must first hold something: at least
        # the built-in echo model, which SelectProvider picks below.
        names = [p.name for p in listed.providers]
        assert names, "ListProviders returned no providers"
        assert "echo" in names, listed
        assert all(names), listed
        chosen = providers.SelectProvider(
            prov_pb2.SelectProviderRequest(candidates=["echo"]), timeout=RPC_TIMEOUT
        ).provider
        assert chosen.name == "echo" and chosen.healthy, chosen
        expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: providers.SelectProvider(
            prov_pb2.SelectProviderRequest(candidates=["nope"]), timeout=RPC_TIMEOUT))

    return [
        ("a schedule fires by itself, pauses and is deleted", schedule_fires_pauses_and_is_deleted),
        ("a release gate refuses, allows and records an override",
         gate_refuses_allows_and_records_an_override),
        ("provider selection", providers_select_echo_when_named),
    ]


def bootstrap_admin(binary, data_dir):
    """Runs `llmops auth bootstrap` on data_dir's database; the admin secret it printed."""
    out = subprocess.run([binary, "auth", "bootstrap", "--data-dir", data_dir],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("secret: "):
            return line[len("secret: "):]
    raise AssertionError("no secret in %r" % out)


def make_generation_checks(channel, port):
    """Generations as a Python client logs and reads them: idempotent ids, the cost
    field's presence (proto3 `optional`), a bad batch naming its field, and GenAI spans
    exported by the OpenTelemetry SDK's OTLP gRPC exporter."""
    import grpc

    stub = gen_pb2_grpc.GenerationServiceStub(channel)

    def log_and_read_back():
        g = gen_pb2.Generation(id="py-gen-1", prompt_name=PROMPT, prompt_version="1.0.0",
                               model="py-model", input="hi", output="hello",
                               latency_ms=42.5, input_tokens=3, output_tokens=5)
        first = stub.LogGenerations(gen_pb2.LogGenerationsRequest(generations=[g]),
                                    timeout=RPC_TIMEOUT)
        again = stub.LogGenerations(gen_pb2.LogGenerationsRequest(generations=[g]),
                                    timeout=RPC_TIMEOUT)
        if (first.accepted, first.duplicates, again.accepted, again.duplicates) != (1, 0, 0, 1):
            raise AssertionError("not idempotent: %s / %s" % (first, again))
        got = stub.GetGeneration(gen_pb2.GetGenerationRequest(generation_id="py-gen-1"),
                                 timeout=RPC_TIMEOUT).generation
        if got.output != "hello" or got.latency_ms != 42.5 or got.HasField("cost"):
            raise AssertionError("read back %s" % got)
        listed = stub.ListGenerations(gen_pb2.ListGenerationsRequest(model="py-model"),
                                      timeout=RPC_TIMEOUT).generations
        if [x.id for x in listed] != ["py-gen-1"]:
            raise AssertionError("listed %s" % [x.id for x in listed])

    def bad_batch_names_the_field():
        bad = gen_pb2.Generation(id="py-gen-2", latency_ms=-1)
        try:
            stub.LogGenerations(gen_pb2.LogGenerationsRequest(generations=[bad]),
                                timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise AssertionError("expected INVALID_ARGUMENT, got %s" % e.code())
            if "generations[0].latency_ms" not in e.details():
                raise AssertionError("the field is not named: %s" % e.details())
        else:
            raise AssertionError("a negative latency was stored")

    def otel_spans_become_generations():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "py-app"}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint="127.0.0.1:%d" % port, insecure=True, timeout=10)))
        tracer = provider.get_tracer("llmops-python-check")
        with tracer.start_as_current_span("chat py-otel-model") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", "py-otel-model")
            span.set_attribute("gen_ai.usage.input_tokens", 11)
            span.set_attribute("gen_ai.usage.output_tokens", 22)
            span.set_attribute("gen_ai.prompt", "What is 2+2?")
            span.set_attribute("gen_ai.completion", "4")
            span.set_attribute("llmops.prompt.name", PROMPT)
            span.set_attribute("llmops.prompt.version", "1.0.0")
            span.set_attribute("llmops.user_id", "py-otel-user")
            context = span.get_span_context()
        with tracer.start_as_current_span("GET /healthz") as plain:
            plain.set_attribute("http.request.method", "GET")
        provider.shutdown()
        gen_id = "otel-%032x-%016x" % (context.trace_id, context.span_id)
        got = stub.GetGeneration(gen_pb2.GetGenerationRequest(generation_id=gen_id),
                                 timeout=RPC_TIMEOUT).generation
        seen = (got.model, got.provider, got.input_tokens, got.output_tokens, got.input,
                got.output, got.prompt_name, got.user_id, got.metadata["service.name"])
        want = ("py-otel-model", "openai", 11, 22, "What is 2+2?", "4", PROMPT,
                "py-otel-user", "py-app")
        if seen != want:
            raise AssertionError("the span became %s, not %s" % (seen, want))
        listed = stub.ListGenerations(gen_pb2.ListGenerationsRequest(user_id="py-otel-user"),
                                      timeout=RPC_TIMEOUT).generations
        if [x.id for x in listed] != [gen_id]:
            raise AssertionError("only the GenAI span is a generation: %s"
                                 % [x.id for x in listed])

    def online_sampling_matches_hashlib():
        # The documented rule, computed here: the first 8 bytes of
        # SHA-256("<evaluation id>/<generation id>") over 2^64, below the rate.
        import hashlib
        import time

        evaluation = eval_pb2_grpc.EvaluationServiceStub(channel)
        evaluation.CreateOnlineEvaluation(eval_pb2.CreateOnlineEvaluationRequest(
            online_evaluation=eval_pb2.OnlineEvaluation(
                id="py-online",
                filter=eval_pb2.OnlineEvaluationFilter(prompt_name=PROMPT,
                                                       model="py-online-model"),
                sample_rate=0.5,
                metrics=[eval_pb2.MetricConfig(name="json", scorer="json_valid")])),
            timeout=RPC_TIMEOUT)
        ids = ["py-online-%d" % i for i in range(80)]

        def sampled(gen_id):
            digest = hashlib.sha256(("py-online/" + gen_id).encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < 0.5

        expected = {i for i in ids if sampled(i)}
        stub.LogGenerations(gen_pb2.LogGenerationsRequest(generations=[
            gen_pb2.Generation(id=i, prompt_name=PROMPT, prompt_version="1.0.0",
                               model="py-online-model", input="q", output='{"a": 1}',
                               latency_ms=10) for i in ids]), timeout=RPC_TIMEOUT)
        deadline = time.time() + 20
        while True:
            listed = stub.ListGenerations(gen_pb2.ListGenerationsRequest(
                model="py-online-model", page_size=100), timeout=RPC_TIMEOUT).generations
            scored = {g.id for g in listed if g.scores}
            if scored == expected:
                break
            if time.time() > deadline or not scored <= expected:
                raise AssertionError("scored %d generations, hashlib expects %d (%d differ)"
                                     % (len(scored), len(expected), len(scored ^ expected)))
            time.sleep(0.1)
        verdict = [g for g in listed if g.scores][0].scores[0]
        if verdict.online_evaluation_id != "py-online" or verdict.scores["json"] != 1.0:
            raise AssertionError("verdict %s" % verdict)

    return [("generations: logged once, read back", log_and_read_back),
            ("generations: a bad batch names the field", bad_batch_names_the_field),
            ("generations: OpenTelemetry GenAI spans over OTLP", otel_spans_become_generations),
            ("online evaluation: sampling agrees with hashlib", online_sampling_matches_hashlib)]


def make_certificate(work):
    """A self-signed certificate for 127.0.0.1 and localhost (openssl); its paths."""
    cert = os.path.join(work, "server.pem")
    key = os.path.join(work, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def make_tls_checks(port, admin):
    """The TLS server as a Python client sees it: plain text reaches no service."""
    import grpc

    def plain_text_is_refused():
        channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        try:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            try:
                auth.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5,
                            metadata=[("authorization", "Bearer " + admin)])
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise AssertionError("expected UNAVAILABLE, got %s" % e.code())
            else:
                raise AssertionError("a plain-text call to the TLS port was answered")
        finally:
            channel.close()

    return [("tls: a plain-text client reaches no service", plain_text_is_refused)]


def make_auth_checks(channel, admin):
    """Keys and roles as a Python client sees them: bearer metadata, the codes, and the
    role each RPC declares, read from the generated descriptors."""
    import grpc

    auth = auth_pb2_grpc.AuthServiceStub(channel)
    prompts = pb2_grpc.PromptServiceStub(channel)
    bearer = lambda secret: (("authorization", "Bearer " + secret),)  # noqa: E731
    keys = {}

    def declared_roles():
        service = pb2.DESCRIPTOR.services_by_name["PromptService"]
        role = lambda method: service.methods_by_name[method].GetOptions().Extensions[  # noqa: E731
            auth_pb2.required_role]
        assert role("RenderPrompt") == auth_pb2.ROLE_READER
        assert role("CreatePromptVersion") == auth_pb2.ROLE_EDITOR
        assert role("ActivatePromptVersion") == auth_pb2.ROLE_ADMIN

    def no_key():
        expect_status(grpc.StatusCode.UNAUTHENTICATED,
                      lambda: auth.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=RPC_TIMEOUT))

    def admin_key():
        me = auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bearer(admin), timeout=RPC_TIMEOUT)
        assert me.role == auth_pb2.ROLE_ADMIN and me.identity == "admin", me

    def reader_key():
        created = auth.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(name="py-reader", role=auth_pb2.ROLE_READER),
            metadata=bearer(admin), timeout=RPC_TIMEOUT)
        assert created.secret.startswith("llmops_"), created
        assert created.api_key.secret_prefix == created.secret[:11]
        keys["reader"] = created
        version = pb2.PromptVersion(name="py-auth", version="1.0.0", template="Hi")
        expect_status(grpc.StatusCode.PERMISSION_DENIED, lambda: prompts.CreatePromptVersion(
            pb2.CreatePromptVersionRequest(prompt_version=version),
            metadata=bearer(created.secret), timeout=RPC_TIMEOUT))
        # Allowed to read: the prompt does not exist, which is not a refusal.
        expect_status(grpc.StatusCode.NOT_FOUND, lambda: prompts.GetPromptVersion(
            pb2.GetPromptVersionRequest(name="py-auth", version="1.0.0"),
            metadata=bearer(created.secret), timeout=RPC_TIMEOUT))

    def revoked_key():
        reader = keys["reader"]
        auth.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(api_key_id=reader.api_key.api_key_id),
                          metadata=bearer(admin), timeout=RPC_TIMEOUT)
        try:
            auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bearer(reader.secret),
                        timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
            assert "revoked" in e.details() and reader.secret not in e.details(), e.details()
        else:
            raise AssertionError("a revoked key was admitted")

    return [
        ("each RPC's role is readable from the descriptors", declared_roles),
        ("no API key is UNAUTHENTICATED", no_key),
        ("the bootstrapped admin key", admin_key),
        ("a reader key reads but does not write", reader_key),
        ("a revoked key is UNAUTHENTICATED saying so", revoked_key),
    ]


def describe(exc):
    import grpc

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return "rpc failed with %s: %s" % (exc.code().name, exc.details())
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    return "%s: %s" % (type(exc).__name__, exc)


def report(ok, name, reason=""):
    """Prints the check's single result line; any further detail (a diff, a server
    log) goes on following lines prefixed with `#`, so they never look like results."""
    if ok:
        print("ok - %s" % name)
        return
    first, _, rest = reason.partition("\n")
    print("not ok - %s: %s" % (name, first))
    for line in rest.splitlines():
        print("#   " + line)


def main(argv):
    stubs_only = "--stubs-only" in argv[1:]

    # Turn SIGTERM into a normal exit so the `finally` below still stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    passed = failed = 0
    work = tempfile.mkdtemp(prefix="llmops-pytest-")
    proc = None
    channel = None
    try:
        try:
            generate_stubs(os.path.join(work, "stubs"))
        except Exception as e:  # noqa: BLE001
            report(False, "generate stubs", describe(e))
            failed += 1
            return 1
        if stubs_only:
            report(True, "generate stubs (%s, %s)" % (pb2.__name__, pb2_grpc.__name__))
            passed += 1
            return 0

        import grpc

        port = free_port()
        data_dir = os.path.join(work, "data")
        os.makedirs(data_dir)
        log_path = os.path.join(work, "server.log")
        try:
            proc = start_server(resolve_bin(), port, data_dir, log_path)
            channel = grpc.insecure_channel("127.0.0.1:%d" % port)
            wait_healthy(channel, proc, log_path)
        except Exception as e:  # noqa: BLE001
            report(False, "server start", describe(e))
            failed += 1
            return 1

        stub = pb2_grpc.PromptServiceStub(channel)
        experiments = exp_pb2_grpc.ExperimentServiceStub(channel)
        evaluation = eval_pb2_grpc.EvaluationServiceStub(channel)
        providers = prov_pb2_grpc.ProviderServiceStub(channel)
        checks = (
            make_checks(stub)
            + make_experiment_checks(experiments)
            + make_evaluation_checks(evaluation, stub)
            + make_continuous_checks(evaluation, stub, providers)
            + make_generation_checks(channel, port)
        )
        # A second server that needs API keys, its first admin key bootstrapped, and
        # serves TLS with a certificate made here.
        auth_port = free_port()
        auth_dir = os.path.join(work, "auth-data")
        os.makedirs(auth_dir)
        auth_log = os.path.join(work, "auth-server.log")
        try:
            admin = bootstrap_admin(resolve_bin(), auth_dir)
            cert, key = make_certificate(work)
            auth_proc = start_server(resolve_bin(), auth_port, auth_dir, auth_log,
                                     env={"LLMOPS_AUTH__MODE": "api_keys",
                                          "LLMOPS_TLS__CERT_FILE": cert,
                                          "LLMOPS_TLS__KEY_FILE": key})
            with open(cert, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            auth_channel = grpc.secure_channel("127.0.0.1:%d" % auth_port, credentials)
            wait_healthy(auth_channel, auth_proc, auth_log)
        except Exception as e:  # noqa: BLE001
            report(False, "server with API keys start", describe(e))
            failed += 1
            return 1
        checks = (checks + make_auth_checks(auth_channel, admin)
                  + make_tls_checks(auth_port, admin))
        try:
            for name, check in checks:
                try:
                    check()
                except Exception as e:  # noqa: BLE001
                    report(False, name, describe(e))
                    failed += 1
                else:
                    report(True, name)
                    passed += 1
        finally:
            auth_channel.close()
            stop_server(auth_proc)
        if failed:
            print("# server log (tail):")
            for line in log_tail(log_path).splitlines():
                print("#   " + line)
        return 1 if failed else 0
    finally:
        if channel is not None:
            channel.close()
        stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
        print("python-client: %d passed, %d failed" % (passed, failed))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
