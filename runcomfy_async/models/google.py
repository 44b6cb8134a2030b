"""Typed inputs of Google's image models on RunComfy (Nano Banana 2, 2 Lite and Pro).

Every field, default, enum and range is copied from the model's API page (``runcomfy-api/seeds``);
descriptions are the pages' own, in English. The enums differ between models on purpose:

==========================  ==================================  =====================  ===========
model                       aspect_ratio                        resolution             default AR
==========================  ==================================  =====================  ===========
nano-banana-2 (t2i, edit)   auto + 10 ratios 21:9 .. 9:16       0.5K, 1K, 2K, 4K       auto
nano-banana/pro             the 10 ratios, no auto              1K, 2K, 4K             16:9
nano-banana-2-lite          auto + 10 ratios + 4:1 1:4 8:1 1:8  (no resolution field)  auto
==========================  ==================================  =====================  ===========

Client-side checks beyond the pages (so mistakes fail before a request is paid for):

* ``prompt`` must be non-empty and at most :data:`PROMPT_MAX_CHARS` (100,000) characters;
  ``system_prompt`` at most as long.
* every ``image_urls`` item must be an ``https://`` URL or a ``data:`` URI without whitespace,
  or a local file (a :class:`pathlib.Path`, ``bytes``, a binary file object or a ``file://``
  URI), which the client checks and sends inline when the input is submitted.
* ``seed`` must fit in a signed 64-bit integer.
"""

from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from ._base import ModelInput
from ._schema import MEDIA_URL_PATTERN, PROMPT_MAX_CHARS, SEED_MAX, SEED_MIN

__all__ = [
    "NanoBanana2Edit",
    "NanoBanana2LiteTextToImage",
    "NanoBanana2TextToImage",
    "NanoBananaProTextToImage",
]


def _prompt(description: str) -> Meta:
    """Constraints of a prompt: non-empty, at most ``PROMPT_MAX_CHARS`` characters."""
    return Meta(min_length=1, max_length=PROMPT_MAX_CHARS, description=description)


_RATIOS_10 = Literal["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]

_NumImages = Annotated[int, Meta(ge=1, le=4, description="The number of images to generate.")]
_Seed = Annotated[
    int,
    Meta(ge=SEED_MIN, le=SEED_MAX, description="The seed for the random number generator."),
]
_AspectRatio = Annotated[
    Literal["auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"],
    Meta(description="The aspect ratio (W:H) of the generated image."),
]
_Resolution = Annotated[
    Literal["0.5K", "1K", "2K", "4K"],
    Meta(description="The resolution of the image to generate."),
]
_OutputFormat = Annotated[
    Literal["jpeg", "png", "webp"],
    Meta(description="The format of the generated image."),
]
_SafetyTolerance = Annotated[
    Literal[1, 2, 3, 4, 5, 6],
    Meta(
        description="The safety tolerance level for content moderation: "
        "1 is the strictest and 6 the least strict."
    ),
]
_LimitGenerations = Annotated[
    bool, Meta(description="If true, limits each round of prompting to a single generation.")
]
_EnableWebSearch = Annotated[
    bool, Meta(description="Enables web search, to use up-to-date information in the generation.")
]
_ImageUrls = Annotated[
    list[Annotated[str, Meta(pattern=MEDIA_URL_PATTERN)]],
    Meta(
        min_length=1,
        max_length=20,
        description="The images to use for image-to-image generation or image editing: "
        "publicly reachable https:// URLs, data: URIs or local files.",
        extra_json_schema={"format": "image_uris"},
    ),
]


class NanoBanana2TextToImage(ModelInput, frozen=True, kw_only=True, omit_defaults=True):
    """Inputs of ``google/nano-banana-2/text-to-image``: images from a text prompt.

    Only ``prompt`` is required. Client-side checks: ``prompt`` is 1 to 100,000 characters and
    ``seed`` fits in 64 bits. Building the Struct checks nothing; call :meth:`validated`.

    Example:
        >>> from runcomfy_async.models import NanoBanana2TextToImage, to_payload
        >>> inputs = NanoBanana2TextToImage(prompt="a fox", aspect_ratio="16:9", num_images=2)
        >>> to_payload(inputs.validated())
        {'prompt': 'a fox', 'num_images': 2, 'aspect_ratio': '16:9'}
    """

    model_id = "google/nano-banana-2/text-to-image"

    prompt: Annotated[str, _prompt("The prompt for image generation.")]
    num_images: _NumImages = 1
    seed: _Seed = 0
    aspect_ratio: _AspectRatio = "auto"
    resolution: _Resolution = "1K"
    output_format: _OutputFormat = "png"
    safety_tolerance: _SafetyTolerance = 4
    limit_generations: _LimitGenerations = True
    enable_web_search: _EnableWebSearch = False


class NanoBanana2Edit(ModelInput, frozen=True, kw_only=True, omit_defaults=True):
    """Inputs of ``google/nano-banana-2/edit``: edit or combine 1 to 20 images with a prompt.

    ``prompt`` and ``image_urls`` are required. Client-side checks: ``prompt`` is 1 to 100,000
    characters, every image is an ``https://`` URL, a ``data:`` URI or a local file (a
    :class:`pathlib.Path`, ``bytes`` or a binary file object, read and sent inline at submit),
    and ``seed`` fits in 64 bits. Building the Struct checks nothing; call :meth:`validated`.

    Example:
        >>> from runcomfy_async.models import NanoBanana2Edit, to_payload
        >>> to_payload(NanoBanana2Edit(prompt="make it rain", image_urls=["https://x.test/a.png"]))
        {'prompt': 'make it rain', 'image_urls': ['https://x.test/a.png']}
    """

    model_id = "google/nano-banana-2/edit"

    prompt: Annotated[str, _prompt("The prompt for image editing.")]
    image_urls: _ImageUrls
    num_images: _NumImages = 1
    seed: _Seed = 0
    aspect_ratio: _AspectRatio = "auto"
    resolution: _Resolution = "1K"
    output_format: _OutputFormat = "png"
    safety_tolerance: _SafetyTolerance = 4
    limit_generations: _LimitGenerations = True
    enable_web_search: _EnableWebSearch = False


class NanoBananaProTextToImage(ModelInput, frozen=True, kw_only=True, omit_defaults=True):
    """Inputs of ``google/nano-banana/pro/text-to-image``: up to 4K images from a text prompt.

    Only ``prompt`` is required. Unlike Nano Banana 2 there is no ``"auto"`` aspect ratio (the
    default is ``"16:9"``) and no ``"0.5K"`` resolution. Client-side check: ``prompt`` is 1 to
    100,000 characters. Building the Struct checks nothing; call :meth:`validated`.

    Example:
        >>> from runcomfy_async.models import NanoBananaProTextToImage
        >>> NanoBananaProTextToImage(prompt="a fox", resolution="4K").validated().resolution
        '4K'
    """

    model_id = "google/nano-banana/pro/text-to-image"

    prompt: Annotated[str, _prompt("Text description of the image to generate.")]
    aspect_ratio: Annotated[
        _RATIOS_10, Meta(description="The aspect ratio (W:H) of the generated image.")
    ] = "16:9"
    resolution: Annotated[
        Literal["1K", "2K", "4K"], Meta(description="The resolution of the generated image.")
    ] = "1K"
    output_format: _OutputFormat = "png"


class NanoBanana2LiteTextToImage(ModelInput, frozen=True, kw_only=True, omit_defaults=True):
    """Inputs of ``google/nano-banana-2-lite/text-to-image``: fast, cheap images from a prompt.

    Only ``prompt`` is required. It has no ``resolution``, ``num_images`` or ``seed``, but adds
    extreme aspect ratios (4:1, 1:4, 8:1, 1:8), an optional ``system_prompt`` (omitted from the
    payload unless given) and a ``thinking_level``. Client-side checks: ``prompt`` is 1 to
    100,000 characters and ``system_prompt`` at most 100,000. Building the Struct checks
    nothing; call :meth:`validated`.

    Example:
        >>> from runcomfy_async.models import NanoBanana2LiteTextToImage, to_payload
        >>> to_payload(NanoBanana2LiteTextToImage(prompt="a fox", aspect_ratio="8:1"))
        {'prompt': 'a fox', 'aspect_ratio': '8:1'}
    """

    model_id = "google/nano-banana-2-lite/text-to-image"

    prompt: Annotated[str, _prompt("Text description of the image you want to generate.")]
    aspect_ratio: Annotated[
        Literal[
            "auto",
            "21:9",
            "16:9",
            "3:2",
            "4:3",
            "5:4",
            "1:1",
            "4:5",
            "3:4",
            "2:3",
            "9:16",
            "4:1",
            "1:4",
            "8:1",
            "1:8",
        ],
        Meta(
            description="Output aspect ratio. Use auto to let the model pick a framing that fits "
            "the prompt. Extreme ratios such as 4:1 and 8:1 are supported."
        ),
    ] = "auto"
    output_format: Annotated[
        Literal["png", "jpeg", "webp"], Meta(description="File format of the returned image.")
    ] = "png"
    system_prompt: (
        Annotated[
            str,
            Meta(
                max_length=PROMPT_MAX_CHARS,
                description="Optional system instruction that steers the model's persona and "
                "output style. Leave unset to omit.",
            ),
        ]
        | UnsetType
    ) = UNSET
    thinking_level: Annotated[
        Literal["minimal", "high"],
        Meta(
            description="Level of model thinking before rendering. minimal is faster and "
            "cheaper; high trades speed for stronger prompt reasoning and may increase cost."
        ),
    ] = "minimal"
