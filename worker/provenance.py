"""Provenance evidence read from the bytes the worker already downloaded, stored beside the pixel score.

Four kinds of evidence, strongest first: C2PA content credentials (read with the c2pa library, whose
validation state we record), the IPTC ``DigitalSourceType`` in XMP, text chunks that generators write
(A1111 ``parameters``, ComfyUI ``prompt``/``workflow``, InvokeAI ``Dream``/``invokeai_metadata``/
``sd-metadata``, Midjourney's ``Description`` with its ``Job ID``, ...) and EXIF/XMP fields that name a
generator. Metadata is easy to forge and to strip: present, it raises confidence; absent, it says nothing.
:mod:`worker.decision` turns an AI declaration into the verdict's label. See docs/provenance.md.

:func:`extract_provenance` never raises and is cheap on images without metadata: it walks the container's
headers (JPEG segments up to the scan, PNG chunks, WebP chunks) without decoding pixels, reads at most
``MAX_TEXT_BYTES`` per text or XMP packet, and calls the c2pa library only when a manifest is embedded.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from worker import provenance_parse as parse

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 1000  # per string kept as evidence
MAX_ITEMS = 16  # per list or mapping kept as evidence
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
C2PA_MIME = {
    "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff", "gif": "image/gif",
    "heif": "image/heif", "avif": "image/avif", "jxl": "image/jxl",
}
# The worker fetches untrusted images: the c2pa library must never go to the network on their behalf.
C2PA_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


class ProvenanceSummary(enum.StrEnum):
    """One word per image, strongest evidence first (the order of the members is the precedence)."""

    C2PA_AI = "c2pa_ai"  # content credentials whose actions declare a generative-AI source
    IPTC_AI = "iptc_ai"  # XMP Iptc4xmpExt:DigitalSourceType = trainedAlgorithmicMedia (or composite with it)
    GENERATOR_METADATA = "generator_metadata"  # generation parameters or a field naming a generator
    C2PA = "c2pa"  # content credentials without an AI action
    NONE = "none"  # nothing found: says nothing about the pixels


@dataclass(frozen=True)
class Provenance:
    """The summary word and the raw evidence (plain JSON: str, int, bool, list, dict)."""

    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


def extract_provenance(data: bytes) -> Provenance:
    """Read provenance metadata from image bytes. Never raises: a failing step is recorded in ``errors``."""
    evidence: dict[str, Any] = {}
    try:
        meta = parse.read_container(data)
        evidence = _evidence(data, meta)
    except Exception as exc:  # arbitrary bytes from the web: record, never raise
        log.debug("provenance extraction failed", exc_info=True)
        evidence.setdefault("errors", []).append(_clip(f"extract: {type(exc).__name__}: {exc}"))
    return Provenance(summary=_summary(evidence).value, evidence=evidence)


def _evidence(data: bytes, meta: parse.Metadata) -> dict[str, Any]:
    evidence: dict[str, Any] = {}
    errors = list(meta.errors)
    fields = dict(meta.texts)
    for source, tiff in meta.exif:
        try:
            fields.update(parse.read_exif(tiff, source))
        except Exception as exc:  # an unreadable EXIF block is evidence too
            errors.append(_clip(f"{source}: {type(exc).__name__}: {exc}"))
    if meta.xmp:
        xmp = _read_xmp(meta.xmp)
        fields.update({f"xmp:{k}": v for k, v in xmp.pop("fields", {}).items()})
        if xmp:
            evidence["xmp"] = xmp
    if fields:
        evidence["fields"] = {k: _clip(v) for k, v in list(fields.items())[:MAX_ITEMS]}
    generators = _generator_hits(fields)
    if meta.c2pa_embedded:
        evidence["c2pa"] = _read_c2pa(data, meta.format)
        name = parse.match_generator(evidence["c2pa"].get("claim_generator", ""))
        if name:
            generators.append({"source": "c2pa:claim_generator", "tool": name})
    if generators:
        evidence["generators"] = generators[:MAX_ITEMS]
    if meta.truncated:
        evidence["truncated"] = True
    if errors:
        evidence["errors"] = errors[:MAX_ITEMS]
    if evidence:
        evidence["format"] = meta.format
    return evidence


def _summary(evidence: dict[str, Any]) -> ProvenanceSummary:
    c2pa = evidence.get("c2pa") or {}
    if c2pa.get("ai"):
        return ProvenanceSummary.C2PA_AI
    if set((evidence.get("xmp") or {}).get("digital_source_type", [])) & AI_SOURCE_TYPES:
        return ProvenanceSummary.IPTC_AI
    if evidence.get("generators"):
        return ProvenanceSummary.GENERATOR_METADATA
    if c2pa:
        return ProvenanceSummary.C2PA
    return ProvenanceSummary.NONE


# --- XMP -------------------------------------------------------------------------------------------------

_DST_URI = re.compile(r"newscodes/digitalsourcetype/([A-Za-z]{1,64})")
_DST_BARE = re.compile(r"DigitalSourceType\s*(?:=\s*[\"']|>\s*)([A-Za-z]{1,64})\s*[\"'<]", re.IGNORECASE)
_XMP_FIELDS = {
    "CreatorTool": re.compile(r"xmp:CreatorTool\s*(?:=\s*\"([^\"]{0,500})\"|>([^<]{0,500})<)"),
    "AISystemUsed": re.compile(r"Iptc4xmpExt:AISystemUsed\s*(?:=\s*\"([^\"]{0,500})\"|>([^<]{0,500})<)"),
    "provenance": re.compile(r"dcterms:provenance\s*(?:=\s*\"([^\"]{0,500})\"|>([^<]{0,500})<)"),
}


def _read_xmp(packets: list[str]) -> dict[str, Any]:
    """DigitalSourceType codes and a few named fields; regular expressions on a capped text, no XML parser."""
    text = "\n".join(packets)
    codes = dict.fromkeys(_DST_URI.findall(text) + _DST_BARE.findall(text))
    result: dict[str, Any] = {}
    if codes:
        result["digital_source_type"] = list(codes)[:MAX_ITEMS]
    found = {}
    for name, pattern in _XMP_FIELDS.items():
        match = pattern.search(text)
        if match:
            found[name] = (match.group(1) or match.group(2) or "").strip()
    if found.get("provenance"):
        result["c2pa_remote_manifest"] = _clip(found.pop("provenance"))  # recorded, never fetched
    found.pop("provenance", None)
    if found:
        result["fields"] = found
    return result


# --- generator text and names ----------------------------------------------------------------------------

_NAMED_FIELDS = {"software", "artist", "make", "model", "source", "xpauthor", "creatortool", "aisystemused"}
_A1111 = re.compile(r"Steps: \d+, Sampler: ")
_A1111_FIELDS = {
    "model": re.compile(r"Model: ([^,\n]{1,200})"),
    "model_hash": re.compile(r"Model hash: ([0-9a-fA-F]{6,64})"),
    "version": re.compile(r"Version: ([^,\n]{1,100})"),
}
_INVOKE_KEYS = {"dream", "sd-metadata", "invokeai_metadata", "invokeai_graph"}
_MIDJOURNEY_JOB = re.compile(r"Job ID: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _generator_hits(fields: dict[str, str]) -> list[dict[str, Any]]:
    """Which fields look written by an image generator: known parameter formats, or a generator's name."""
    hits = []
    for source, text in fields.items():
        key = source.rsplit(":", 1)[-1].lower()
        hit = _classify(key, text)
        if hit:
            hits.append({"source": source, **hit})
    return hits


def _classify(key: str, text: str) -> dict[str, Any] | None:
    if _A1111.search(text):
        found = {k: p.search(text) for k, p in _A1111_FIELDS.items()}
        return {"tool": "AUTOMATIC1111-style", **{k: _clip(m.group(1).strip()) for k, m in found.items() if m}}
    if key in ("prompt", "workflow"):
        obj = _json_object(text)
        if obj is not None and _looks_comfy(obj):
            return {"tool": "ComfyUI", **({"models": _comfy_models(obj)} if key == "prompt" else {})}
        return None
    if key in _INVOKE_KEYS:
        obj = _json_object(text)
        model = _invoke_model(obj) if obj is not None else None
        return {"tool": "InvokeAI", **({"model": _clip(model)} if model else {})}
    if key in ("parameters", "fooocus_scheme"):
        obj = _json_object(text)
        if key == "fooocus_scheme" or (obj is not None and "prompt" in obj):
            return {"tool": "Fooocus" if "fooocus" in text[:20_000].lower() or key != "parameters" else "unknown"}
        return None
    if key == "description" and _MIDJOURNEY_JOB.search(text[:20_000]):  # Midjourney's PNG: the prompt, then its job
        return {"tool": "Midjourney"}
    if key == "generation_data" and text.strip():
        return {"tool": "unknown"}
    if key in _NAMED_FIELDS:
        name = parse.match_generator(text)
        return {"tool": name} if name else None
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _looks_comfy(obj: dict[str, Any]) -> bool:
    if isinstance(obj.get("nodes"), list):
        return True
    return any(isinstance(v, dict) and "class_type" in v for v in list(obj.values())[:200])


def _comfy_models(prompt: dict[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for node in list(prompt.values())[:500]:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            for key in ("ckpt_name", "unet_name", "model_name", "lora_name"):
                if isinstance(inputs.get(key), str):
                    names[_clip(inputs[key], 200)] = None
    return list(names)[:MAX_ITEMS]


def _invoke_model(obj: dict[str, Any]) -> str | None:
    model = obj.get("model_weights") or obj.get("model")
    if isinstance(model, dict):
        model = model.get("model_name") or model.get("name")
    return model if isinstance(model, str) else None


# --- C2PA ------------------------------------------------------------------------------------------------

_c2pa_lock = threading.Lock()
_c2pa_context: tuple[int, Any] | None = None


def _context() -> Any:
    """One c2pa Context per process (rebuilt after a fork), with network fetches switched off."""
    global _c2pa_context
    import c2pa

    with _c2pa_lock:
        if _c2pa_context is None or _c2pa_context[0] != os.getpid():
            _c2pa_context = (os.getpid(), c2pa.Context(settings=c2pa.Settings.from_dict(C2PA_SETTINGS)))
        return _c2pa_context[1]


def _read_c2pa(data: bytes, fmt: str | None) -> dict[str, Any]:
    """The embedded manifest store, summarised; a reading failure is evidence (``error``), not an exception."""
    try:
        import c2pa
    except ImportError:
        return {"present": True, "error": "the c2pa library is not installed (pip install aidetect[provenance])"}
    mime = C2PA_MIME.get(fmt or "")
    if mime is None:
        return {"present": True, "error": f"format {fmt!r} not read by c2pa"}
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=_context()) as reader:
            store = json.loads(reader.json())
    except Exception as exc:  # C2paError and anything the binding raises on hostile bytes
        return {"present": True, "error": _clip(f"{type(exc).__name__}: {exc}")}
    return _summarise_store(store if isinstance(store, dict) else {})


def _summarise_store(store: dict[str, Any]) -> dict[str, Any]:
    manifests = store.get("manifests") if isinstance(store.get("manifests"), dict) else {}
    active_label = store.get("active_manifest")
    active = manifests.get(active_label) if isinstance(manifests.get(active_label), dict) else {}
    actions = [
        {**action, "manifest": "active" if label == active_label else "ingredient"}
        for label, manifest in list(manifests.items())[:MAX_ITEMS]
        if isinstance(manifest, dict)
        for action in _actions(manifest)
    ]
    state = store.get("validation_state")
    results = store.get("validation_results") if isinstance(store.get("validation_results"), dict) else {}
    failures = (results.get("activeManifest") or {}).get("failure") or store.get("validation_status") or []
    signature = active.get("signature_info") if isinstance(active.get("signature_info"), dict) else {}
    return {
        "present": True,
        "ai": any(a.get("digital_source_type") in AI_SOURCE_TYPES for a in actions),
        "claim_generator": _clip(_claim_generator(active)),
        "actions": actions[:MAX_ITEMS],
        "validation_state": state,
        "valid": state in ("Valid", "Trusted"),
        "trusted": state == "Trusted",
        "failures": [_clip(str(f.get("code"))) for f in failures if isinstance(f, dict)][:MAX_ITEMS],
        "signer": _clip(" / ".join(str(signature[k]) for k in ("issuer", "common_name") if signature.get(k))),
        "manifests": len(manifests),
    }


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for assertion in manifest.get("assertions") or []:
        if not (isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions")):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            agent = action.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, dict) else agent
            source = str(action.get("digitalSourceType") or "").rstrip("/").rsplit("/", 1)[-1]
            found.append({
                "action": _clip(str(action.get("action", ""))),
                **({"digital_source_type": _clip(source)} if source else {}),
                **({"software_agent": _clip(str(agent))} if agent else {}),
            })
    return found


def _claim_generator(manifest: dict[str, Any]) -> str:
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list) and infos:
        return ", ".join(
            " ".join(str(i[k]) for k in ("name", "version") if i.get(k)) for i in infos if isinstance(i, dict)
        )
    return str(manifest.get("claim_generator") or "")


def _clip(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """A string safe to keep as JSON evidence: no NUL (PostgreSQL refuses it), at most ``limit`` characters."""
    value = value.replace("\x00", "")
    return value if len(value) <= limit else value[:limit] + "…"


__all__ = ["AI_SOURCE_TYPES", "Provenance", "ProvenanceSummary", "extract_provenance"]
