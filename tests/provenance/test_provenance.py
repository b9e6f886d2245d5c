"""extract_provenance on real image bytes: C2PA signed offline, IPTC XMP, generator text chunks, EXIF, none."""

from __future__ import annotations

import json
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.provenance import images
from worker.provenance import AI_SOURCE_TYPES, Provenance, ProvenanceSummary, extract_provenance
from worker.provenance_parse import MAX_SEGMENTS, MAX_TEXT_BYTES


@pytest.fixture(scope="module")
def signer() -> images.SigningKeys:
    """Keys to sign test manifests with (c2pa-python, a base dependency, signs with them)."""
    return images.make_test_signer()


def summary_of(data: bytes) -> str:
    return extract_provenance(data).summary


# ---- nothing to say -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    images.plain_photo_jpeg,
    lambda: images.encode(images.photo(), "PNG"),
    lambda: images.encode(images.photo(), "WEBP", exif=images.camera_exif().tobytes()),
    lambda: images.encode(images.photo(), "GIF"),
    lambda: images.png_with_text({"Software": "matplotlib version3.8.0, https://matplotlib.org/"}),
], ids=["camera-jpeg", "png", "camera-webp", "gif", "matplotlib-png"])
def test_plain_images_have_no_provenance(build) -> None:
    result = extract_provenance(build())
    assert result.summary == ProvenanceSummary.NONE == "none"
    assert "errors" not in result.evidence and "generators" not in result.evidence


def test_camera_exif_is_kept_as_evidence_without_raising_the_summary() -> None:
    result = extract_provenance(images.plain_photo_jpeg())
    assert result.evidence["fields"]["exif:Make"] == "Canon"
    assert result.evidence["fields"]["exif:Software"].startswith("Adobe Photoshop Lightroom")


# ---- IPTC DigitalSourceType in XMP ----------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["attribute", "resource", "element"])
@pytest.mark.parametrize("code", sorted(AI_SOURCE_TYPES))
def test_iptc_ai_source_type_in_jpeg_xmp(code: str, form: str) -> None:
    result = extract_provenance(images.iptc_jpeg(code, form))
    assert result.summary == "iptc_ai"
    assert result.evidence["xmp"]["digital_source_type"] == [code]
    assert result.evidence["format"] == "jpeg"


def test_non_ai_source_type_is_recorded_but_not_ai() -> None:
    result = extract_provenance(images.iptc_jpeg("digitalCapture"))
    assert result.summary == "none"
    assert result.evidence["xmp"]["digital_source_type"] == ["digitalCapture"]


def test_iptc_xmp_in_png_itxt_and_webp() -> None:
    png = images.png_with_text({"XML:com.adobe.xmp": images.iptc_xmp().decode()}, itxt=True)
    webp = images.encode(images.photo(), "WEBP", xmp=images.iptc_xmp())
    assert summary_of(png) == summary_of(webp) == "iptc_ai"


def test_xmp_creator_tool_naming_a_generator() -> None:
    xmp = images.xmp_packet('xmp:CreatorTool="Adobe Firefly"/>')
    result = extract_provenance(images.encode(images.photo(), "JPEG", xmp=xmp))
    assert result.summary == "generator_metadata"
    assert result.evidence["generators"] == [{"source": "xmp:CreatorTool", "tool": "Adobe Firefly"}]


# ---- generator text chunks and EXIF -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"compressed": True}, {"itxt": True}, {"itxt": True, "compressed": True}],
                         ids=["tEXt", "zTXt", "iTXt", "iTXt-compressed"])
def test_a1111_parameters_in_png(kwargs: dict) -> None:
    result = extract_provenance(images.a1111_png(**kwargs))
    assert result.summary == "generator_metadata"
    [hit] = result.evidence["generators"]
    assert hit == {"source": "png:parameters", "tool": "AUTOMATIC1111-style", "model": "v1-5-pruned-emaonly",
                   "model_hash": "6ce0161689", "version": "v1.6.0"}
    assert result.evidence["fields"]["png:parameters"].startswith("a lighthouse at dusk")


def test_comfyui_prompt_and_workflow() -> None:
    result = extract_provenance(images.comfyui_png())
    assert result.summary == "generator_metadata"
    by_source = {hit["source"]: hit for hit in result.evidence["generators"]}
    assert by_source["png:prompt"] == {"source": "png:prompt", "tool": "ComfyUI",
                                       "models": ["sd_xl_base_1.0.safetensors"]}
    assert by_source["png:workflow"]["tool"] == "ComfyUI"


@pytest.mark.parametrize("key, value, tool", [
    ("invokeai_metadata", json.dumps({"model": {"model_name": "juggernautXL_v9"}}), "InvokeAI"),
    ("sd-metadata", json.dumps({"model_weights": "stable-diffusion-1.5", "app_id": "invoke-ai/InvokeAI"}),
     "InvokeAI"),
    ("Dream", '"a lighthouse" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms', "InvokeAI"),
    ("Software", "NovelAI", "NovelAI"),
    ("Source", "Stable Diffusion XL C1E1DE52", "Stable Diffusion"),
])
def test_other_generator_chunks(key: str, value: str, tool: str) -> None:
    result = extract_provenance(images.png_with_text({key: value}))
    assert result.summary == "generator_metadata"
    assert result.evidence["generators"][0]["tool"] == tool


@pytest.mark.parametrize("build, tool", [(images.novelai_png, "NovelAI"), (images.midjourney_png, "Midjourney")])
def test_novelai_and_midjourney_pngs(build, tool: str) -> None:  # type: ignore[no-untyped-def]
    result = extract_provenance(build())
    assert result.summary == "generator_metadata"
    assert tool in {hit["tool"] for hit in result.evidence["generators"]}


def test_a_description_without_a_midjourney_job_id_says_nothing() -> None:
    assert summary_of(images.png_with_text({"Description": "Job ID: pending. Holiday photo, beach"})) == "none"


def test_prompt_key_that_is_not_comfyui_json_is_not_generator_metadata() -> None:
    assert summary_of(images.png_with_text({"prompt": "say cheese"})) == "none"


@pytest.mark.parametrize("software, expected", [
    ("Midjourney", "Midjourney"), ("DALL-E 3", "DALL-E"), ("Adobe Firefly", "Adobe Firefly"),
    ("Stable Diffusion 2.1", "Stable Diffusion"), ("Adobe Photoshop 25.0", None), ("GIMP 2.10", None),
])
def test_exif_software_naming_a_generator(software: str, expected: str | None) -> None:
    result = extract_provenance(images.exif_jpeg(software=software))
    assert result.evidence["fields"]["exif:Software"] == software
    if expected:
        assert result.summary == "generator_metadata"
        assert result.evidence["generators"] == [{"source": "exif:Software", "tool": expected}]
    else:
        assert result.summary == "none"


def test_a1111_parameters_in_jpeg_exif_user_comment() -> None:
    result = extract_provenance(images.exif_jpeg(user_comment=images.A1111_PARAMETERS))
    assert result.summary == "generator_metadata"
    assert result.evidence["generators"][0]["source"] == "exif:UserComment"
    assert result.evidence["generators"][0]["model"] == "v1-5-pruned-emaonly"


def test_jpeg_comment_with_parameters() -> None:
    data = images.encode(images.photo(), "JPEG", comment=images.A1111_PARAMETERS.encode())
    assert summary_of(data) == "generator_metadata"


# ---- C2PA -------------------------------------------------------------------------------------------------------

def test_c2pa_manifest_with_ai_action(signer: images.SigningKeys) -> None:
    data = images.c2pa_sign(images.plain_photo_jpeg(), "image/jpeg", signer)
    result = extract_provenance(data)
    assert result.summary == "c2pa_ai"
    c2pa = result.evidence["c2pa"]
    assert c2pa["ai"] is True and c2pa["valid"] is True and c2pa["trusted"] is False
    assert c2pa["validation_state"] == "Valid"
    assert c2pa["claim_generator"] == "aidetect-test-generator 1.0"
    assert c2pa["actions"] == [{"action": "c2pa.created", "digital_source_type": "trainedAlgorithmicMedia",
                                "software_agent": "TestDiffusion 1.0", "manifest": "active"}]
    assert "aidetect test signer" in c2pa["signer"]


def test_c2pa_manifest_without_ai_action(signer: images.SigningKeys) -> None:
    data = images.c2pa_sign(images.plain_photo_jpeg(), "image/jpeg", signer, source_type="digitalCapture")
    result = extract_provenance(data)
    assert result.summary == "c2pa"
    assert result.evidence["c2pa"]["ai"] is False and result.evidence["c2pa"]["valid"] is True


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_c2pa_in_png_and_webp(signer: images.SigningKeys, fmt: str, mime: str) -> None:
    data = images.c2pa_sign(images.encode(images.photo(), fmt), mime, signer)
    result = extract_provenance(data)
    assert result.summary == "c2pa_ai" and result.evidence["format"] == fmt.lower()


def test_tampered_pixels_invalidate_the_manifest_but_keep_the_claim(signer: images.SigningKeys) -> None:
    data = bytearray(images.c2pa_sign(images.plain_photo_jpeg(), "image/jpeg", signer))
    data[-20] ^= 0xFF  # inside the entropy-coded scan, covered by the manifest's hash
    result = extract_provenance(bytes(data))
    c2pa = result.evidence["c2pa"]
    assert result.summary == "c2pa_ai"
    assert c2pa["valid"] is False and c2pa["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in c2pa["failures"]


def test_unreadable_manifest_is_evidence_not_an_exception() -> None:
    jumbf = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x30jumb\x00\x00\x00\x28jumd" + b"c2pa" + b"\x00" * 40
    segment = b"\xff\xeb" + (len(jumbf) + 2).to_bytes(2, "big") + jumbf
    plain = images.encode(images.photo(), "JPEG")
    result = extract_provenance(plain[:2] + segment + plain[2:])
    assert result.summary == "c2pa"
    assert result.evidence["c2pa"]["present"] is True and result.evidence["c2pa"]["error"]


# ---- precedence ----------------------------------------------------------------------------------------------------

def test_precedence_c2pa_ai_over_iptc_over_generator_over_c2pa(signer: images.SigningKeys) -> None:
    both = images.encode(images.photo(), "JPEG", xmp=images.iptc_xmp(), exif=_exif_bytes("Midjourney"))
    assert summary_of(both) == "iptc_ai"
    assert summary_of(images.c2pa_sign(both, "image/jpeg", signer)) == "c2pa_ai"
    generator_and_plain_c2pa = images.c2pa_sign(images.a1111_png(), "image/png", signer, source_type="digitalCapture")
    assert summary_of(generator_and_plain_c2pa) == "generator_metadata"


def _exif_bytes(software: str) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0131] = software
    return exif.tobytes()


def test_summary_order_is_the_enum_order() -> None:
    assert [s.value for s in ProvenanceSummary] == ["c2pa_ai", "iptc_ai", "generator_metadata", "c2pa", "none"]


# ---- bounded, never raising -----------------------------------------------------------------------------------------

def test_evidence_is_json_without_nul_and_clipped() -> None:
    data = images.png_with_text({"parameters": "x\x00y " * 100_000 + images.A1111_PARAMETERS})
    result = extract_provenance(data)
    encoded = json.dumps(result.evidence)
    assert "\\u0000" not in encoded
    assert len(result.evidence["fields"]["png:parameters"]) <= 1001
    assert len(encoded) < 20_000


def test_zlib_bomb_in_ztxt_is_truncated_quickly() -> None:
    bomb = zlib.compress(b"A" * (200 << 20), 9)  # 200 MiB of text in about 200 KiB
    data = images.insert_png_chunks(images.encode(images.photo(), "PNG"),
                                    images.png_chunk(b"zTXt", b"parameters\x00\x00" + bomb))
    started = time.perf_counter()
    result = extract_provenance(data)
    assert time.perf_counter() - started < 2
    assert result.evidence["truncated"] is True


def test_chunk_flood_stops_at_the_cap() -> None:
    flood = images.png_chunk(b"tEXt", b"k\x00v") * (MAX_SEGMENTS + 100)
    result = extract_provenance(images.insert_png_chunks(images.encode(images.photo(), "PNG"), flood))
    assert result.evidence["truncated"] is True


def test_huge_text_chunk_is_read_up_to_the_cap() -> None:
    text = "Steps: 20, Sampler: Euler, " + "z" * (3 * MAX_TEXT_BYTES)
    result = extract_provenance(images.png_with_text({"parameters": text}))
    assert result.summary == "generator_metadata"


def test_large_image_without_metadata_is_cheap() -> None:
    from PIL import Image

    noise = Image.effect_noise((2500, 2500), 80).convert("RGB")
    data = images.encode(noise, "JPEG", quality=98)
    assert len(data) > 2_000_000
    started = time.perf_counter()
    for _ in range(10):
        assert extract_provenance(data) == Provenance("none", {})
    assert (time.perf_counter() - started) / 10 < 0.02


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xff\xd8\xff", b"\xff\xd8\xff\xe1\x00\x01", b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff",
    b"RIFF\x00\x00\x00\x00WEBPEXIF\xff\xff\xff\xff", b"II*\x00\xff\xff\xff\xff", b"MM\x00*\x00\x00\x00\x08\xff\xff",
    b"<x:xmpmeta DigitalSourceType='trainedAlgorithmicMedia'", b"\xff\xd8\xff" + b"\xff" * 100_000,
])
def test_malformed_containers_never_raise(data: bytes) -> None:
    result = extract_provenance(data)
    assert result.summary in {s.value for s in ProvenanceSummary}
    json.dumps(result.evidence)


def test_concurrent_reads_share_one_c2pa_context(signer: images.SigningKeys) -> None:
    data = images.c2pa_sign(images.plain_photo_jpeg(), "image/jpeg", signer)
    expected = extract_provenance(data)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: extract_provenance(data), range(64)))
    assert all(r == expected for r in results)
