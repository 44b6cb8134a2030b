"""Tests of runcomfy_async.models: typed inputs of the seed models, validation and introspection."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runcomfy_async import AsyncClient
from runcomfy_async._exceptions import InputValidationError
from runcomfy_async.models import (
    MODELS,
    PROMPT_MAX_CHARS,
    FieldInfo,
    ModelInput,
    NanoBanana2Edit,
    NanoBanana2LiteTextToImage,
    NanoBanana2TextToImage,
    NanoBananaProTextToImage,
    describe,
    get_model,
    to_payload,
    validate_inputs,
)
from runcomfy_async.testing import FakeRunComfy

T2I = "google/nano-banana-2/text-to-image"
EDIT = "google/nano-banana-2/edit"
PRO = "google/nano-banana/pro/text-to-image"
LITE = "google/nano-banana-2-lite/text-to-image"
URL = "https://playgrounds-storage-public.runcomfy.net/tools/7324/media-files/input-1-1.png"

RATIOS_10 = ("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
NB2_DEFAULTS: dict[str, Any] = {
    "num_images": 1,
    "seed": 0,
    "aspect_ratio": "auto",
    "resolution": "1K",
    "output_format": "png",
    "safety_tolerance": 4,
    "limit_generations": True,
    "enable_web_search": False,
}
# The defaults of each page, field by field (required fields have none).
PAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    T2I: NB2_DEFAULTS,
    EDIT: NB2_DEFAULTS,
    PRO: {"aspect_ratio": "16:9", "resolution": "1K", "output_format": "png"},
    LITE: {"aspect_ratio": "auto", "output_format": "png", "thinking_level": "minimal"},
}
# The fields of each page, in the page's order.
PAGE_FIELDS: dict[str, list[str]] = {
    T2I: ["prompt", *NB2_DEFAULTS],
    EDIT: ["prompt", "image_urls", *NB2_DEFAULTS],
    PRO: ["prompt", "aspect_ratio", "resolution", "output_format"],
    LITE: ["prompt", "aspect_ratio", "output_format", "system_prompt", "thinking_level"],
}


def minimal(model_id: str) -> dict[str, Any]:
    """The smallest valid inputs of a model."""
    data: dict[str, Any] = {"prompt": "a red fox in the snow"}
    if model_id == EDIT:
        data["image_urls"] = [URL]
    return data


def reject(model_id: str, **changes: Any) -> InputValidationError:
    """Validate minimal inputs with ``changes`` applied and return the error they must raise."""
    data = {**minimal(model_id), **changes}
    with pytest.raises(InputValidationError) as info:
        validate_inputs(model_id, data)
    err = info.value
    assert err.model_id == model_id
    assert "\n" not in str(err)
    return err


def test_catalog_holds_the_four_seed_models() -> None:
    """MODELS maps each seed model id to its Struct, and get_model agrees."""
    assert dict(MODELS) == {
        T2I: NanoBanana2TextToImage,
        EDIT: NanoBanana2Edit,
        PRO: NanoBananaProTextToImage,
        LITE: NanoBanana2LiteTextToImage,
    }
    for model_id, cls in MODELS.items():
        assert get_model(model_id) is cls
        assert cls.model_id == model_id
        assert issubclass(cls, ModelInput)
    assert get_model("someone/else") is None


def test_catalog_is_read_only() -> None:
    """MODELS cannot be changed by callers."""
    with pytest.raises(TypeError):
        MODELS["x/y"] = NanoBanana2TextToImage  # type: ignore[index]


@pytest.mark.parametrize("model_id", list(PAGE_DEFAULTS))
def test_defaults_match_the_page_and_are_not_sent(model_id: str) -> None:
    """Each model's defaults equal its page's and are omitted from the payload."""
    obj = validate_inputs(model_id, minimal(model_id))
    assert obj is not None
    for name, default in PAGE_DEFAULTS[model_id].items():
        assert getattr(obj, name) == default, name
    assert to_payload(obj) == minimal(model_id)
    explicit = validate_inputs(model_id, {**minimal(model_id), **PAGE_DEFAULTS[model_id]})
    assert explicit is not None
    assert to_payload(explicit) == minimal(model_id)


@pytest.mark.parametrize("model_id", list(PAGE_DEFAULTS))
def test_struct_config_is_frozen_strict_and_omits_defaults(model_id: str) -> None:
    """Every model Struct is frozen, keyword-only, omits defaults and forbids unknown fields."""
    cls = MODELS[model_id]
    config = cls.__struct_config__
    assert config.frozen and config.omit_defaults and config.forbid_unknown_fields
    with pytest.raises(TypeError):
        cls("a positional prompt")


def test_defaults_typed_by_the_user_are_not_sent() -> None:
    """A default value built at run time (not the same object) is still left out of the payload."""
    ratio = "".join(["16", ":", "9"])
    obj = NanoBananaProTextToImage(prompt="a fox", aspect_ratio=ratio)  # type: ignore[arg-type]
    assert to_payload(obj) == {"prompt": "a fox"}


def test_non_default_values_are_sent() -> None:
    """Values that differ from the defaults appear in the payload, JSON-encodable."""
    obj = validate_inputs(
        EDIT,
        {
            "prompt": "p",
            "image_urls": [URL, URL],
            "num_images": 3,
            "seed": 42,
            "safety_tolerance": 1,
            "limit_generations": False,
            "enable_web_search": True,
        },
    )
    assert obj is not None
    payload = to_payload(obj)
    assert payload == {
        "prompt": "p",
        "image_urls": [URL, URL],
        "num_images": 3,
        "seed": 42,
        "safety_tolerance": 1,
        "limit_generations": False,
        "enable_web_search": True,
    }
    assert msgspec.json.decode(msgspec.json.encode(payload)) == payload


def test_struct_can_be_built_directly_and_exposes_model_id() -> None:
    """A Struct built with keywords works, and model_id is readable on the instance."""
    obj = NanoBanana2TextToImage(prompt="a fox", aspect_ratio="16:9")
    assert obj.model_id == T2I
    assert obj.aspect_ratio == "16:9"
    assert obj.validated() == obj
    assert to_payload(obj) == {"prompt": "a fox", "aspect_ratio": "16:9"}
    assert "model_id" not in msgspec.structs.asdict(obj)


def test_direct_construction_does_not_check_but_validated_does() -> None:
    """Building a Struct checks no constraint; validated() catches the bad value."""
    obj = NanoBanana2TextToImage(prompt="a fox", num_images=9)
    with pytest.raises(InputValidationError) as info:
        obj.validated()
    assert info.value.field == "num_images"
    assert info.value.model_id == T2I
    assert "1 to 4" in str(info.value)


def test_validated_names_a_field_that_cannot_be_json() -> None:
    """validated() and to_payload refuse a value JSON cannot carry, naming its field."""
    obj = NanoBananaProTextToImage(prompt=object())  # type: ignore[arg-type]
    with pytest.raises(InputValidationError) as info:
        obj.validated()
    assert info.value.field == "prompt"
    with pytest.raises(InputValidationError):
        to_payload(obj)


def test_structs_are_frozen() -> None:
    """Assigning to a field of a model Struct fails."""
    obj = NanoBananaProTextToImage(prompt="a fox")
    with pytest.raises(AttributeError):
        obj.prompt = "other"  # type: ignore[misc]


def test_from_dict_checks_and_builds() -> None:
    """ModelInput.from_dict builds checked inputs and rejects bad ones."""
    obj = NanoBanana2Edit.from_dict({"prompt": "p", "image_urls": [URL]})
    assert obj.image_urls == [URL]
    with pytest.raises(InputValidationError):
        NanoBanana2Edit.from_dict({"prompt": "p"})


def test_validate_inputs_accepts_a_struct() -> None:
    """A ModelInput passed to validate_inputs is checked against the given model's schema."""
    obj = validate_inputs(PRO, NanoBananaProTextToImage(prompt="a fox", resolution="4K"))
    assert isinstance(obj, NanoBananaProTextToImage)
    assert obj.resolution == "4K"
    with pytest.raises(InputValidationError):
        validate_inputs(PRO, NanoBanana2TextToImage(prompt="a fox", resolution="0.5K"))


def test_unknown_model_is_not_checked() -> None:
    """validate_inputs returns None for a model outside the catalog, whatever the inputs."""
    assert validate_inputs("someone/other-model", {"anything": [1, 2], "prompt": ""}) is None


@pytest.mark.parametrize(
    ("model_id", "field", "value", "ok"),
    [
        (T2I, "aspect_ratio", "auto", True),
        (EDIT, "aspect_ratio", "auto", True),
        (LITE, "aspect_ratio", "auto", True),
        (PRO, "aspect_ratio", "auto", False),
        (T2I, "resolution", "0.5K", True),
        (EDIT, "resolution", "0.5K", True),
        (PRO, "resolution", "0.5K", False),
        (PRO, "resolution", "4K", True),
        (LITE, "aspect_ratio", "8:1", True),
        (LITE, "aspect_ratio", "1:8", True),
        (LITE, "aspect_ratio", "4:1", True),
        (T2I, "aspect_ratio", "8:1", False),
        (EDIT, "aspect_ratio", "1:4", False),
        (PRO, "aspect_ratio", "8:1", False),
        (LITE, "thinking_level", "high", True),
        (LITE, "thinking_level", "medium", False),
        (LITE, "output_format", "webp", True),
        (PRO, "output_format", "gif", False),
        (LITE, "system_prompt", "be terse", True),
        (LITE, "system_prompt", None, False),
    ],
)
def test_enums_differ_between_models(model_id: str, field: str, value: Any, ok: bool) -> None:
    """Each model accepts exactly the enum values of its own page."""
    data = {**minimal(model_id), field: value}
    if ok:
        obj = validate_inputs(model_id, data)
        assert obj is not None
        assert getattr(obj, field) == value
    else:
        assert reject(model_id, **{field: value}).field == field


@pytest.mark.parametrize("model_id", [PRO, LITE])
@pytest.mark.parametrize("field", ["num_images", "seed", "safety_tolerance", "enable_web_search"])
def test_fields_the_bundled_schema_lacks_are_let_through(
    model_id: str, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A field unlike any known one passes (it may be new in the API), logged once per field."""
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    for _ in range(2):
        assert validate_inputs(model_id, {**minimal(model_id), field: 1}) is not None
    hits = [r for r in caplog.records if f"field {field!r} is not in the bundled" in r.message]
    assert len(hits) <= 1


def test_unknown_fields_are_still_checked_around() -> None:
    """An unknown field does not excuse a known one: a bad enum beside it is refused."""
    err = reject(LITE, resolution="1K", aspect_ratio="7:7")
    assert err.field == "aspect_ratio"


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("aspect_ration", "aspect_ratio"), ("Prompt", "prompt"), ("output_formats", "output_format")],
)
def test_near_miss_of_a_known_field_is_refused(typo: str, meant: str) -> None:
    """A name close to a known field is taken for a typo and refused, naming the field."""
    err = reject(PRO, **{typo: "x"})
    assert err.field == typo
    assert f"did you mean {meant!r}?" in err.reason


def test_lite_system_prompt_is_sent_only_when_given() -> None:
    """system_prompt has no default: it is omitted unless given, then sent as is."""
    plain = validate_inputs(LITE, minimal(LITE))
    assert plain is not None
    assert "system_prompt" not in to_payload(plain)
    steered = validate_inputs(LITE, {**minimal(LITE), "system_prompt": "be terse"})
    assert steered is not None
    assert to_payload(steered)["system_prompt"] == "be terse"


@pytest.mark.parametrize("model_id", [T2I, EDIT])
@pytest.mark.parametrize("value", [0, 5, -1, 100])
def test_num_images_out_of_range(model_id: str, value: int) -> None:
    """num_images outside 1..4 is refused with a message naming the range."""
    err = reject(model_id, num_images=value)
    assert err.field == "num_images"
    assert "must be an integer from 1 to 4" in str(err)
    assert f"got the integer {value}" in str(err)


@pytest.mark.parametrize(
    "value", ["2", 2.0, True, None, [2]], ids=["str", "float", "bool", "null", "list"]
)
def test_num_images_is_strict(value: Any) -> None:
    """num_images is never coerced from a string, float, bool, null or list."""
    assert reject(T2I, num_images=value).field == "num_images"


@pytest.mark.parametrize("value", [1, 2, 3, 4])
def test_num_images_in_range(value: int) -> None:
    """num_images 1..4 is accepted."""
    obj = validate_inputs(T2I, {**minimal(T2I), "num_images": value})
    assert obj is not None
    assert obj.num_images == value  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ([], "an empty list"),
        ([URL] * 21, "a list of 21 items"),
        ("https://x.test/a.png", "the string"),
        (None, "null"),
    ],
)
def test_image_urls_count_and_type(value: Any, got: str) -> None:
    """image_urls must be a list of 1 to 20 URLs."""
    err = reject(EDIT, image_urls=value)
    assert err.field == "image_urls"
    assert "must be a list of 1 to 20 https:// URLs" in err.reason
    assert got in err.reason


@pytest.mark.parametrize(
    "bad", ["http://x.test/a.png", "ftp://x.test/a.png", "x.test/a.png", "https://", "https://a b"]
)
def test_image_urls_must_be_https(bad: str) -> None:
    """Each image URL must be an https:// URL; the message shows which item is wrong."""
    err = reject(EDIT, image_urls=[URL, URL, bad])
    assert err.field == "image_urls"
    assert "https:// URLs" in err.reason
    assert f"item 2 is the string {bad!r}" in err.reason


def test_image_urls_boundaries_accepted() -> None:
    """One and twenty https:// URLs are accepted."""
    for count in (1, 20):
        obj = validate_inputs(EDIT, {"prompt": "p", "image_urls": [URL] * count})
        assert obj is not None


@pytest.mark.parametrize("value", [7, 0, "4", 4.0, True], ids=["7", "0", "str", "float", "bool"])
def test_safety_tolerance_rejected(value: Any) -> None:
    """safety_tolerance is an integer enum 1..6: 7, 0 and the string "4" are refused."""
    err = reject(T2I, safety_tolerance=value)
    assert err.field == "safety_tolerance"
    assert "must be one of: 1, 2, 3, 4, 5, 6 (default 4)" in err.reason


def test_safety_tolerance_string_names_the_type() -> None:
    """The message for "4" shows it was a string."""
    assert "got the string '4'" in reject(EDIT, safety_tolerance="4").reason


def test_seed_must_be_an_integer_in_64_bits() -> None:
    """A seed may be any 64-bit integer; floats, strings and huge numbers are refused."""
    for seed in (0, -1, 2**63 - 1, 123456789):
        assert validate_inputs(T2I, {**minimal(T2I), "seed": seed}) is not None
    for bad in (1.5, "7", 2**63, 10**100):
        assert reject(T2I, seed=bad).field == "seed"


@pytest.mark.parametrize("field", ["limit_generations", "enable_web_search"])
def test_booleans_are_strict(field: str) -> None:
    """Boolean fields refuse 1 and "true"."""
    for bad in (1, "true"):
        err = reject(T2I, **{field: bad})
        assert err.field == field
        assert "must be true or false" in err.reason


def test_unknown_field_is_named_with_known_fields_and_a_suggestion() -> None:
    """A near-miss is refused by name, listing the known fields and the likely one."""
    err = reject(T2I, num_image=2)
    assert err.field == "num_image"
    assert err.reason.startswith(f"is not an input of {T2I}; did you mean 'num_images'?")
    assert "known fields: prompt, num_images, seed" in err.reason


def test_unknown_field_with_odd_name() -> None:
    """An unknown field whose name has backticks and newlines is let through."""
    name = "we`ird\nname"
    assert validate_inputs(PRO, {"prompt": "p", name: 1}) is not None


@pytest.mark.parametrize("model_id", list(MODELS))
def test_missing_prompt(model_id: str) -> None:
    """A missing prompt is refused as required."""
    data = minimal(model_id)
    del data["prompt"]
    with pytest.raises(InputValidationError) as info:
        validate_inputs(model_id, data)
    assert info.value.field == "prompt"
    assert info.value.reason.startswith("is required")


def test_missing_image_urls() -> None:
    """The edit model requires image_urls and says what they must be."""
    with pytest.raises(InputValidationError) as info:
        validate_inputs(EDIT, {"prompt": "p"})
    assert info.value.field == "image_urls"
    assert info.value.reason == (
        "is required; it must be a list of 1 to 20 https:// URLs, data: URIs or local files"
    )


@pytest.mark.parametrize("model_id", list(MODELS))
def test_empty_prompt(model_id: str) -> None:
    """An empty prompt is refused."""
    err = reject(model_id, prompt="")
    assert err.field == "prompt"
    assert "must be a non-empty string" in err.reason


def test_huge_prompt_is_refused_clearly() -> None:
    """A 10 MB prompt is refused with a short message giving the cap and its size."""
    err = reject(T2I, prompt="x" * (10 * 1024 * 1024))
    assert err.field == "prompt"
    assert "at most 100,000 characters" in str(err)
    assert "got a string of 10,485,760 characters" in str(err)
    assert len(str(err)) < 300


def test_prompt_cap_boundary() -> None:
    """A prompt of exactly PROMPT_MAX_CHARS characters is accepted, one more is refused."""
    assert validate_inputs(PRO, {"prompt": "y" * PROMPT_MAX_CHARS}) is not None
    assert reject(PRO, prompt="y" * (PROMPT_MAX_CHARS + 1)).field == "prompt"


def test_prompt_must_be_a_string() -> None:
    """A non-string prompt is refused, saying what was given."""
    err = reject(PRO, prompt=42)
    assert err.reason == (
        "must be a non-empty string of at most 100,000 characters; got the integer 42"
    )


def test_enum_message_names_field_allowed_values_and_default() -> None:
    """The error for a bad enum names the field, every allowed value and the default."""
    err = reject(PRO, aspect_ratio="auto")
    assert str(err) == (
        f"{PRO}: field 'aspect_ratio' must be one of: '21:9', '16:9', '3:2', '4:3', '5:4', "
        "'1:1', '4:5', '3:4', '2:3', '9:16' (default '16:9'); got the string 'auto'"
    )
    lite = reject(LITE, aspect_ratio="7:3")
    assert "'4:1', '1:4', '8:1', '1:8' (default 'auto')" in lite.reason
    assert "'0.5K'" not in reject(PRO, resolution="0.5K").reason.split(";")[0]


def test_error_is_a_value_error_with_cause() -> None:
    """InputValidationError is a ValueError chained to msgspec's error."""
    err = reject(T2I, num_images=0)
    assert isinstance(err, ValueError)
    assert isinstance(err.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize("data", [[], "prompt", None, 3], ids=["list", "str", "null", "int"])
def test_inputs_that_are_not_an_object(data: Any) -> None:
    """Inputs that are not a mapping are refused without a field."""
    with pytest.raises(InputValidationError) as info:
        validate_inputs(T2I, data)
    assert info.value.field is None
    assert "must be a JSON object" in info.value.reason


def test_non_string_keys_are_refused() -> None:
    """A mapping with a non-string key is refused."""
    with pytest.raises(InputValidationError) as info:
        bad: dict[Any, Any] = {"prompt": "p", 1: "x"}
        validate_inputs(PRO, bad)
    assert "field names must be strings" in info.value.reason


@pytest.mark.parametrize("model_id", list(MODELS))
def test_describe_lists_every_field_of_the_page(model_id: str) -> None:
    """The description lists the page's fields in order, with defaults and descriptions."""
    infos = describe(MODELS[model_id])
    assert [i.name for i in infos] == PAGE_FIELDS[model_id]
    for info in infos:
        assert isinstance(info, FieldInfo)
        assert info.description
        assert info.rule.startswith("must be")
        if info.name in PAGE_DEFAULTS[model_id]:
            assert not info.required
            assert info.default == PAGE_DEFAULTS[model_id][info.name]
    required = {i.name for i in infos if i.required}
    assert required == ({"prompt", "image_urls"} if model_id == EDIT else {"prompt"})


def test_describe_reports_choices_and_ranges() -> None:
    """The description gives enums in page order, integer ranges, list sizes and lengths."""
    t2i = {i.name: i for i in describe(NanoBanana2TextToImage)}
    assert t2i["aspect_ratio"].choices == ("auto", *RATIOS_10)
    assert t2i["aspect_ratio"].type == "string"
    assert t2i["resolution"].choices == ("0.5K", "1K", "2K", "4K")
    assert t2i["output_format"].choices == ("jpeg", "png", "webp")
    assert t2i["safety_tolerance"].choices == (1, 2, 3, 4, 5, 6)
    assert t2i["safety_tolerance"].type == "integer"
    assert (t2i["num_images"].minimum, t2i["num_images"].maximum) == (1, 4)
    assert t2i["seed"].type == "integer" and t2i["seed"].choices is None
    assert t2i["limit_generations"].type == "boolean"
    assert (t2i["prompt"].min_length, t2i["prompt"].max_length) == (1, PROMPT_MAX_CHARS)

    edit = {i.name: i for i in describe(NanoBanana2Edit)}
    urls = edit["image_urls"]
    assert (urls.type, urls.min_items, urls.max_items) == ("list[string]", 1, 20)
    assert urls.pattern is not None and urls.pattern.startswith("^(?:https://|data:")
    assert urls.format == "image_uris"

    pro = {i.name: i for i in describe(NanoBananaProTextToImage)}
    assert pro["aspect_ratio"].choices == RATIOS_10
    assert pro["aspect_ratio"].default == "16:9"
    assert pro["resolution"].choices == ("1K", "2K", "4K")

    lite = {i.name: i for i in describe(NanoBanana2LiteTextToImage)}
    assert lite["aspect_ratio"].choices == ("auto", *RATIOS_10, "4:1", "1:4", "8:1", "1:8")
    assert lite["output_format"].choices == ("png", "jpeg", "webp")
    assert lite["thinking_level"].choices == ("minimal", "high")
    assert not lite["system_prompt"].required and lite["system_prompt"].default is None


def test_describe_returns_a_fresh_list() -> None:
    """Changing the list describe returns does not change the next answer."""
    first = describe(NanoBananaProTextToImage)
    first.clear()
    assert len(describe(NanoBananaProTextToImage)) == 4


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
all_field_names = sorted({name for names in PAGE_FIELDS.values() for name in names})
model_ids = st.sampled_from([*MODELS, "someone/other-model"])


def check_contract(model_id: str, data: Any) -> None:
    """validate_inputs returns a Struct or None, or raises InputValidationError, nothing else."""
    try:
        result = validate_inputs(model_id, data)
    except InputValidationError as err:
        assert err.model_id == model_id
        assert err.field is None or isinstance(err.field, str)
        assert "\n" not in str(err) and len(str(err)) <= 600
    else:
        if model_id in MODELS:
            assert isinstance(result, MODELS[model_id])
            assert result is not None
            assert validate_inputs(model_id, to_payload(result)) == result
        else:
            assert result is None


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    model_ids,
    st.dictionaries(st.sampled_from(all_field_names) | st.text(max_size=12), json_values),
)
def test_property_arbitrary_dicts_only_raise_input_validation_error(
    model_id: str, data: dict[str, Any]
) -> None:
    """Arbitrary JSON-like dicts never make validate_inputs raise anything else."""
    check_contract(model_id, data)


@settings(max_examples=300, deadline=None)
@given(model_ids, st.sampled_from(all_field_names), json_values)
def test_property_one_bad_field_in_valid_inputs(model_id: str, field: str, value: Any) -> None:
    """Valid inputs with one field replaced by any JSON value are accepted or refused cleanly."""
    check_contract(model_id, {**minimal(model_id), field: value})


@pytest.mark.anyio
async def test_client_sends_an_unknown_field_and_refuses_a_typo(
    fake: FakeRunComfy, client: AsyncClient
) -> None:
    """The client sends a field the bundled schema lacks as given, and refuses a near-miss."""
    job = await client.submit(PRO, {"prompt": "a fox", "style_preset": "noir"})
    assert fake.jobs[job.request_id].inputs == {"prompt": "a fox", "style_preset": "noir"}
    created = fake.jobs_created
    with pytest.raises(InputValidationError, match="did you mean 'aspect_ratio'"):
        await client.submit(PRO, {"prompt": "a fox", "aspect_ration": "1:1"})
    assert fake.jobs_created == created
