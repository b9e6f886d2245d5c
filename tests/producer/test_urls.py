import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidetect.urls import InvalidURL, Rejection, normalise_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a/../b/./c?b=2&a=1#frag", "http://example.com/b/c?a=1&b=2"),
        ("https://example.com:443/x.jpg", "https://example.com/x.jpg"),
        ("https://example.com:8443/x.jpg", "https://example.com:8443/x.jpg"),
        ("  http://example.com  ", "http://example.com/"),
        ("http://bücher.example/bild.png", "http://xn--bcher-kva.example/bild.png"),
        ("http://example.com/a b.jpg", "http://example.com/a%20b.jpg"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_normalise_canonical_forms(raw: str, expected: str) -> None:
    assert normalise_url(raw).url == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", Rejection.EMPTY),
        ("ftp://example.com/a.jpg", Rejection.BAD_SCHEME),
        ("file:///etc/passwd", Rejection.BAD_SCHEME),
        ("data:image/png;base64,AAAA", Rejection.BAD_SCHEME),
        ("javascript:alert(1)", Rejection.BAD_SCHEME),
        ("example.com/a.jpg", Rejection.BAD_SCHEME),
        ("http://user:secret@example.com/a.jpg", Rejection.CREDENTIALS),
        ("http:///a.jpg", Rejection.NO_HOST),
        ("http://example.com:99999/", Rejection.MALFORMED),
        ("http://example.com/" + "a" * 100_000, Rejection.TOO_LONG),
    ],
)
def test_rejections_carry_a_reason(raw: str, reason: Rejection) -> None:
    with pytest.raises(InvalidURL) as info:
        normalise_url(raw)
    assert info.value.reason is reason


def test_domain_is_lowercase_host() -> None:
    assert normalise_url("https://IMG.Example.org/x").domain == "img.example.org"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_invalid_url(raw: str) -> None:
    try:
        normalise_url(raw)
    except InvalidURL:
        pass


url_parts = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}/{path}?{query}",
    st.sampled_from(["http", "https", "HTTP"]),
    st.from_regex(r"[a-zA-Z0-9]{1,10}(\.[a-zA-Z]{2,5}){1,2}", fullmatch=True),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30),
    st.text(alphabet="abc=&%20xyz", max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(url_parts)
def test_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalise_url(raw)
    except InvalidURL:
        return
    assert normalise_url(once.url) == once
