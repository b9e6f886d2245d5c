"""Image bytes with provenance metadata, written the way generators and cameras write them.

C2PA manifests are signed for real with the c2pa library and a throw-away ES256 certificate chain (a test CA
and a signer certificate, generated offline): the reader validates them like any other manifest, except that
the test CA is on no trust list (``validation_state`` is ``Valid``, not ``Trusted``).
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111_PARAMETERS = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 64x48, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)
COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
}
NOVELAI_COMMENT = {"prompt": "a lighthouse at dusk", "steps": 28, "sampler": "k_euler_ancestral", "seed": 42,
                   "scale": 5.0, "uc": "lowres"}
MIDJOURNEY_DESCRIPTION = ("a lighthouse at dusk, oil painting --ar 4:3 --v 6.1 "
                          "Job ID: 9f1c2e4a-7b3d-4c8e-a1f2-3d4e5f6a7b8c")
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 4, "type": "CheckpointLoaderSimple"}], "links": []}


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A small image with some texture (a gradient plus a seed-dependent pattern)."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    pixels = image.load()
    for x in range(0, width, 7):
        for y in range(0, height, 5):
            pixels[x, y] = ((x * 13 + seed) % 256, (y * 29 + seed) % 256, (x * y + seed) % 256)
    return image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D Mark IV"
    exif[0x0131] = "Adobe Photoshop Lightroom Classic 12.0"
    exif[0x013B] = "Jane Photographer"
    return exif


def plain_photo_jpeg() -> bytes:
    """A camera JPEG: EXIF from a camera and an editor, no AI metadata."""
    return encode(photo(), "JPEG", quality=90, exif=camera_exif().tobytes())


def xmp_packet(body: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dcterms="http://purl.org/dc/terms/" {body}'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def iptc_xmp(code: str = "trainedAlgorithmicMedia", form: str = "attribute") -> bytes:
    """XMP with Iptc4xmpExt:DigitalSourceType, as an attribute, an rdf:resource or an element."""
    if form == "attribute":
        return xmp_packet(f'Iptc4xmpExt:DigitalSourceType="{DST}{code}"/>')
    if form == "resource":
        return xmp_packet(f'><Iptc4xmpExt:DigitalSourceType rdf:resource="{DST}{code}"/></rdf:Description>')
    return xmp_packet(f"><Iptc4xmpExt:DigitalSourceType>{DST}{code}</Iptc4xmpExt:DigitalSourceType></rdf:Description>")


def iptc_jpeg(code: str = "trainedAlgorithmicMedia", form: str = "attribute") -> bytes:
    return encode(photo(), "JPEG", quality=90, xmp=iptc_xmp(code, form))


def png_with_text(texts: dict[str, str], compressed: bool = False, itxt: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if itxt:
            info.add_itxt(key, value, zip=compressed)
        else:
            info.add_text(key, value, zip=compressed)
    return encode(photo(), "PNG", pnginfo=info)


def a1111_png(**kwargs: bool) -> bytes:
    return png_with_text({"parameters": A1111_PARAMETERS}, **kwargs)


def comfyui_png() -> bytes:
    return png_with_text({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)})


def novelai_png() -> bytes:
    """What NovelAI writes: its name as Software, the generation settings as a JSON Comment."""
    return png_with_text({"Title": "NovelAI generated image", "Software": "NovelAI",
                          "Source": "NovelAI Diffusion V4 4F49EC75", "Comment": json.dumps(NOVELAI_COMMENT)})


def midjourney_png() -> bytes:
    """What Midjourney writes in its PNG downloads: the prompt and job id as Description, the user as Author."""
    return png_with_text({"Author": "u1234567", "Description": MIDJOURNEY_DESCRIPTION})


def invokeai_png() -> bytes:
    metadata = {"generation_mode": "txt2img", "model": {"model_name": "juggernautXL_v9", "base_model": "sdxl"}}
    return png_with_text({"invokeai_metadata": json.dumps(metadata)})


def exif_jpeg(software: str | None = None, user_comment: str | None = None) -> bytes:
    exif = Image.Exif()
    if software:
        exif[0x0131] = software
    if user_comment is not None:  # A1111 writes JPEG parameters here, UCS-2 behind an 8-byte charset prefix
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + user_comment.encode("utf-16-be")
    return encode(photo(), "JPEG", quality=90, exif=exif.tobytes())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def insert_png_chunks(png: bytes, *chunks: bytes) -> bytes:
    """``png`` with raw chunks inserted right after IHDR."""
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


# ---- C2PA ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKeys:
    """A PEM certificate chain (signer, then CA) and the signer's PKCS#8 private key."""

    chain: bytes
    key: bytes


def make_test_signer() -> SigningKeys:
    """An ES256 chain the c2pa library accepts: a CA, and a signer cert with digitalSignature + emailProtection."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aidetect tests")])

    def usage(signer: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not signer,
                             crl_sign=not signer, encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: str, issuer: str, public_key: Any) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    ca = (builder("aidetect test CA", "aidetect test CA", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(signer=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder("aidetect test signer", "aidetect test CA", key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(signer=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return SigningKeys(
        chain=leaf.public_bytes(pem) + ca.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def c2pa_sign(data: bytes, mime: str, signer: SigningKeys, source_type: str | None = "trainedAlgorithmicMedia",
              generator: str = "aidetect-test-generator", agent: str = "TestDiffusion 1.0") -> bytes:
    """``data`` with an embedded, signed C2PA manifest whose one action is ``c2pa.created``."""
    import c2pa

    action: dict[str, Any] = {"action": "c2pa.created", "softwareAgent": {"name": agent}}
    if source_type:
        action["digitalSourceType"] = DST + source_type
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "test image",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, signer.chain, signer.key, None)
    with c2pa.Signer.from_info(info) as c2pa_signer, c2pa.Builder(json.dumps(manifest)) as builder:
        out = io.BytesIO()
        builder.sign(c2pa_signer, mime, io.BytesIO(data), out)
    return out.getvalue()


# ---- files whose metadata decides (or must not decide) the verdict --------------------------------------------

@dataclass(frozen=True)
class VerdictSample:
    """An image file, the ``reason`` its verdict must carry, and the metadata-free file with the same pixels."""

    data: bytes
    reason: str  # "pixels" when the metadata must not change the pixels' label
    twin: str  # the sample with identical pixels and no metadata


def verdict_samples(signer: SigningKeys) -> dict[str, VerdictSample]:
    """PNG and JPEG files as generators and cameras write them, plus their metadata-free twins."""
    plain_jpeg = encode(photo(), "JPEG", quality=90)
    return {
        "plain.png": VerdictSample(png_with_text({}), "pixels", "plain.png"),
        "plain.jpg": VerdictSample(plain_jpeg, "pixels", "plain.jpg"),
        "a1111.png": VerdictSample(a1111_png(), "generator_metadata", "plain.png"),
        "comfyui.png": VerdictSample(comfyui_png(), "generator_metadata", "plain.png"),
        "novelai.png": VerdictSample(novelai_png(), "generator_metadata", "plain.png"),
        "midjourney.png": VerdictSample(midjourney_png(), "generator_metadata", "plain.png"),
        "midjourney.jpg": VerdictSample(iptc_jpeg("trainedAlgorithmicMedia"), "iptc", "plain.jpg"),
        "composite.jpg": VerdictSample(iptc_jpeg("compositeWithTrainedAlgorithmicMedia"), "iptc", "plain.jpg"),
        "firefly.jpg": VerdictSample(c2pa_sign(plain_jpeg, "image/jpeg", signer), "c2pa", "plain.jpg"),
        "camera.jpg": VerdictSample(c2pa_sign(plain_jpeg, "image/jpeg", signer, source_type="digitalCapture",
                                              generator="aidetect-test-camera", agent="camera firmware 2.1"),
                                    "pixels", "plain.jpg"),
    }
