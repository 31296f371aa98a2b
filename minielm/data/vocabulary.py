"""The synthetic catalog's vocabulary: product types, brands, colours, materials, units, and the
shopper lexicon (colloquial synonyms, abbreviations, compounds, filler) that the noise draws from.

The lexicon is fixed, not random: a given canonical word always has the same few noisy forms,
so a rewriter can learn the mapping from a few thousand (noisy, canonical) pairs. Catalog text
uses only the canonical words; shopper words never appear in it, which is why noisy queries
retrieve fewer relevant products than their canonical rewrites.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProductType:
    name: str                      # canonical phrase used in titles and canonical queries
    category: str
    materials: tuple[str, ...]
    unit: str | None               # size unit (see UNITS) or None for named sizes / no size
    sizes: tuple[str, ...]         # size values (numbers for a unit, names otherwise, may be empty)
    base_price: float
    synonyms: tuple[str, ...] = ()   # what shoppers call it; never in catalog text
    short: str | None = None         # under-specified form (head noun)
    complements: tuple[str, ...] = ()
    substitutes: tuple[str, ...] = ()


_APPAREL_SIZES = ("small", "medium", "large", "extra large")
_BED_SIZES = ("twin", "full", "queen", "king")

PRODUCT_TYPES: tuple[ProductType, ...] = (
    # kitchen
    ProductType("pressure cooker", "kitchen", ("stainless steel", "aluminum"), "quart", ("3", "6", "8"), 89,
                ("instapot", "instant pot"), "cooker", ("sealing ring", "steamer basket"), ("slow cooker",)),
    ProductType("slow cooker", "kitchen", ("stainless steel", "ceramic"), "quart", ("4", "6", "7"), 49,
                ("crockpot", "crock pot"), "cooker", ("slow cooker liners",), ("pressure cooker", "dutch oven")),
    ProductType("dutch oven", "kitchen", ("cast iron", "enameled cast iron"), "quart", ("5", "6", "7"), 69,
                ("casserole pot",), "oven", ("pot holder",), ("slow cooker", "stock pot")),
    ProductType("stock pot", "kitchen", ("stainless steel", "aluminum"), "quart", ("8", "12", "16"), 39,
                ("soup pot",), "pot", ("pot holder",), ("dutch oven",)),
    ProductType("frying pan", "kitchen", ("cast iron", "nonstick", "stainless steel"), "inch", ("8", "10", "12"), 35,
                ("skillet",), "pan", ("pot holder",), ("stock pot",)),
    ProductType("electric kettle", "kitchen", ("stainless steel", "glass", "plastic"), "liter", ("1", "1.5", "1.7"), 29,
                ("water boiler", "teakettle"), "kettle", ("tea infuser",), ("coffee maker",)),
    ProductType("coffee maker", "kitchen", ("stainless steel", "plastic"), "cup", ("4", "10", "12"), 59,
                ("coffee machine", "drip brewer"), "maker", ("coffee filters",), ("electric kettle",)),
    ProductType("coffee filters", "kitchen", ("paper", "bamboo"), "count", ("100", "200"), 7,
                ("filter papers",), "filters", ("coffee maker",)),
    ProductType("cutting board", "kitchen", ("bamboo", "plastic", "wood"), "inch", ("12", "16", "18"), 22,
                ("chopping block",), "board", ("chef knife",)),
    ProductType("chef knife", "kitchen", ("stainless steel", "carbon steel"), "inch", ("6", "8", "10"), 45,
                ("cooks knife",), "knife", ("cutting board", "knife sharpener")),
    ProductType("knife sharpener", "kitchen", ("ceramic", "diamond"), None, (), 19,
                ("honing tool",), "sharpener", ("chef knife",)),
    ProductType("water bottle", "kitchen", ("stainless steel", "plastic", "glass"), "ounce", ("16", "24", "32"), 24,
                ("thermos", "drink flask"), "bottle", ("bottle brush",)),
    ProductType("sealing ring", "kitchen", ("silicone",), "quart", ("3", "6", "8"), 9,
                ("gasket",), "ring", ("pressure cooker",)),
    ProductType("steamer basket", "kitchen", ("stainless steel", "silicone"), None, (), 14,
                ("veggie steamer",), "basket", ("pressure cooker",)),
    ProductType("slow cooker liners", "kitchen", ("plastic",), "count", ("8", "16"), 6,
                ("crockpot bags",), "liners", ("slow cooker",)),
    ProductType("pot holder", "kitchen", ("cotton", "silicone"), "pack", ("2", "4"), 11,
                ("oven mitt",), "holder", ("dutch oven", "frying pan")),
    ProductType("tea infuser", "kitchen", ("stainless steel", "silicone"), None, (), 8,
                ("tea strainer",), "infuser", ("electric kettle",)),
    ProductType("bottle brush", "kitchen", ("nylon", "silicone"), None, (), 7,
                ("scrub wand",), "brush", ("water bottle",)),
    # furniture
    ProductType("bedside table", "furniture", ("wood", "oak", "metal"), "inch", ("18", "24"), 79,
                ("nightstand", "night stand"), "table", ("table lamp",), ("storage bin",)),
    ProductType("bookshelf", "furniture", ("wood", "metal"), "tier", ("3", "4", "5"), 99,
                ("bookcase",), None, (), ("storage bin",)),
    ProductType("office chair", "furniture", ("mesh", "leather", "fabric"), None, (), 149,
                ("desk chair", "computer seat"), "chair", ("standing desk",)),
    ProductType("standing desk", "furniture", ("wood", "metal"), "inch", ("48", "55", "63"), 249,
                ("sit stand desk", "standup desk"), "desk", ("office chair", "laptop stand")),
    ProductType("sofa", "furniture", ("leather", "fabric", "velvet"), "seat", ("2", "3"), 499,
                ("couch", "settee"), None, ("throw pillow",)),
    ProductType("bed frame", "furniture", ("wood", "metal"), None, _BED_SIZES, 199,
                ("bed base",), "frame", ("mattress",)),
    ProductType("mattress", "furniture", ("memory foam", "latex"), None, _BED_SIZES, 399,
                ("bed topper",), None, ("bed frame", "bed sheets")),
    # apparel
    ProductType("running shoes", "apparel", ("mesh", "leather"), "size", ("8", "9", "10", "11"), 79,
                ("sneakers", "trainers"), "shoes", ("athletic socks",)),
    ProductType("athletic socks", "apparel", ("cotton", "wool"), "pack", ("3", "6"), 15,
                ("gym socks",), "socks", ("running shoes",)),
    ProductType("t-shirt", "apparel", ("cotton", "polyester"), None, _APPAREL_SIZES, 14,
                ("tee",), "shirt", ()),
    ProductType("hooded sweatshirt", "apparel", ("cotton", "fleece"), None, _APPAREL_SIZES, 39,
                ("hoodie",), "sweatshirt", ()),
    ProductType("rain jacket", "apparel", ("nylon", "polyester"), None, _APPAREL_SIZES, 69,
                ("raincoat", "slicker"), "jacket", (), ("hooded sweatshirt",)),
    ProductType("winter gloves", "apparel", ("wool", "leather", "fleece"), None, _APPAREL_SIZES, 19,
                ("mittens",), "gloves", ()),
    ProductType("yoga pants", "apparel", ("spandex", "cotton"), None, _APPAREL_SIZES, 29,
                ("leggings",), "pants", ("yoga mat",)),
    ProductType("backpack", "apparel", ("nylon", "canvas", "leather"), "liter", ("20", "30", "40"), 49,
                ("rucksack", "bookbag"), None, ("water bottle",)),
    # electronics
    ProductType("wireless headphones", "electronics", ("plastic", "aluminum"), None, (), 99,
                ("bluetooth headset", "cordless cans"), "headphones", ("headphone case",), ("wireless earbuds",)),
    ProductType("wireless earbuds", "electronics", ("plastic",), None, (), 79,
                ("earphones", "earpods"), "earbuds", ("phone charger",), ("wireless headphones",)),
    ProductType("headphone case", "electronics", ("nylon", "leather"), None, (), 15,
                ("headset pouch",), "case", ("wireless headphones",)),
    ProductType("phone charger", "electronics", ("plastic",), "watt", ("20", "30", "65"), 19,
                ("charging block", "power adapter"), "charger", ("usb c cable",), ("power bank",)),
    ProductType("usb c cable", "electronics", ("nylon", "braided nylon"), "foot", ("3", "6", "10"), 9,
                ("type c cord", "charging cord"), "cable", ("phone charger",)),
    ProductType("computer monitor", "electronics", ("plastic", "aluminum"), "inch", ("24", "27", "32"), 229,
                ("pc screen", "display screen"), "monitor", ("laptop stand",)),
    ProductType("laptop stand", "electronics", ("aluminum", "plastic", "wood"), None, (), 35,
                ("laptop riser",), "stand", ("computer monitor",)),
    ProductType("wireless mouse", "electronics", ("plastic",), None, (), 25,
                ("cordless mouse",), "mouse", ("mouse pad",)),
    ProductType("mouse pad", "electronics", ("fabric", "leather"), "inch", ("9", "12"), 10,
                ("mouse mat",), "pad", ("wireless mouse",)),
    ProductType("power bank", "electronics", ("plastic", "aluminum"), "mah", ("10000", "20000"), 39,
                ("portable charger", "battery pack"), None, ("usb c cable",), ("phone charger",)),
    # home
    ProductType("bath towel", "home", ("cotton", "microfiber"), "pack", ("2", "4", "6"), 29,
                ("shower towel",), "towel", ("shower curtain",)),
    ProductType("bed sheets", "home", ("cotton", "microfiber", "linen"), None, _BED_SIZES, 45,
                ("sheet set",), "sheets", ("mattress", "throw pillow")),
    ProductType("throw pillow", "home", ("velvet", "cotton", "linen"), "inch", ("18", "20"), 19,
                ("cushion", "accent pillow"), "pillow", ("sofa",)),
    ProductType("shower curtain", "home", ("polyester", "vinyl"), "inch", ("72",), 17,
                ("bath curtain",), "curtain", ("bath towel",)),
    ProductType("table lamp", "home", ("ceramic", "metal", "glass"), None, (), 39,
                ("desk light", "reading light"), "lamp", ("bedside table",)),
    ProductType("storage bin", "home", ("plastic", "fabric"), "quart", ("12", "30", "64"), 16,
                ("storage tote", "organizer box"), "bin", (), ("bookshelf",)),
    ProductType("trash can", "home", ("stainless steel", "plastic"), "gallon", ("8", "13"), 45,
                ("garbage can", "waste basket"), "can", ("trash bags",)),
    ProductType("trash bags", "home", ("plastic",), "gallon", ("13", "30"), 12,
                ("garbage bags", "bin liners"), "bags", ("trash can",)),
    # sports and outdoor
    ProductType("yoga mat", "sports", ("rubber", "tpe", "pvc"), "mm", ("4", "6", "8"), 29,
                ("exercise mat", "workout mat"), "mat", ("yoga block",)),
    ProductType("yoga block", "sports", ("cork", "foam"), "pack", ("1", "2"), 12,
                ("yoga brick",), "block", ("yoga mat",)),
    ProductType("dumbbells", "sports", ("cast iron", "rubber", "neoprene"), "pound", ("5", "10", "20"), 39,
                ("hand weights", "free weights"), None, ("yoga mat",)),
    ProductType("camping tent", "sports", ("nylon", "polyester"), "person", ("2", "4", "6"), 129,
                ("dome shelter",), "tent", ("sleeping bag",)),
    ProductType("sleeping bag", "sports", ("polyester", "down"), None, (), 59,
                ("sleep sack",), "bag", ("camping tent",)),
    ProductType("garden hose", "sports", ("rubber", "vinyl"), "foot", ("50", "100"), 35,
                ("water hose",), "hose", ()),
    ProductType("bike helmet", "sports", ("plastic",), None, ("small", "medium", "large"), 45,
                ("bicycle helmet", "cycling helmet"), "helmet", ()),
)

TYPES_BY_NAME = {t.name: t for t in PRODUCT_TYPES}

BRANDS: dict[str, tuple[str, ...]] = {
    "kitchen": ("cookwell", "ironhearth", "zestra", "panora", "kitchara", "brewlux", "solvine"),
    "furniture": ("oakridge", "nordvik", "loftwell", "havenly", "timberline", "cozara"),
    "apparel": ("stridex", "northpeak", "velora", "kinetix", "urbanfox", "trailmark", "aerolite"),
    "electronics": ("voltara", "sonique", "pixelon", "ampere", "quantix", "nexbolt", "auralink"),
    "home": ("plushome", "serenia", "dwellio", "casabella", "linenra", "tidyco"),
    "sports": ("summitgear", "flexcore", "ironpeak", "trekora", "zenfit", "ridgeway"),
}

COLOURS = ("black", "white", "gray", "silver", "red", "blue", "navy", "green", "pink", "beige", "brown", "purple")

# Shopper forms that never appear in catalog text.
COLOUR_SYNONYMS = {"gray": ("grey",), "beige": ("tan", "khaki"), "purple": ("violet",), "navy": ("dark blue",)}
MATERIAL_SYNONYMS = {"aluminum": ("aluminium", "alloy"), "stainless steel": ("inox", "steel"),
                     "velvet": ("velour",), "spandex": ("lycra",), "polyester": ("poly",),
                     "memory foam": ("gel foam",), "rubber": ("rubberized",), "tpe": ("eco foam",)}
ABBREVIATIONS = {"black": "blk", "white": "wht", "gray": "gry", "silver": "slvr", "brown": "brn",
                 "green": "grn", "purple": "purp", "stainless steel": "ss", "cast iron": "ci",
                 "polyester": "poly", "microfiber": "micro", "extra large": "xl", "large": "lg",
                 "medium": "med", "small": "sm", "wireless": "wrls", "leather": "lthr", "bluetooth": "bt",
                 "queen": "qn", "king": "kg", "computer": "comp"}
# Compound words that shoppers split, and two-word phrases they join (both directions are noise).
SPLITS = {"bookshelf": "book shelf", "backpack": "back pack", "nonstick": "non stick",
          "microfiber": "micro fiber", "dumbbells": "dumb bells", "sweatshirt": "sweat shirt",
          "earbuds": "ear buds", "headphones": "head phones", "bedside": "bed side", "t-shirt": "t shirt",
          "mattress": "mat tress", "spandex": "span dex"}

# What a unit looks like in catalog text (canonical) and the variants shoppers type.
UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "quart": ("quart", ("{n}qt", "{n} qt", "{n}-quart", "{n} qts")),
    "inch": ("inch", ("{n}in", "{n} in", "{n}-inch", "{n} inches")),
    "liter": ("liter", ("{n}l", "{n} ltr", "{n} litre", "{n}-liter")),
    "ounce": ("ounce", ("{n}oz", "{n} oz", "{n} fl oz")),
    "cup": ("cup", ("{n}c", "{n}-cup", "{n} cups")),
    "count": ("count", ("{n}ct", "{n} ct", "{n} pcs")),
    "pack": ("pack", ("{n}pk", "{n} pk", "pack of {n}")),
    "tier": ("tier", ("{n}-tier", "{n} shelves", "{n} shelf")),
    "seat": ("seater", ("{n}-seater", "{n} seats", "{n} person")),
    "size": ("size", ("sz {n}", "{n}m", "size{n}")),
    "watt": ("watt", ("{n}w", "{n} w", "{n}-watt")),
    "foot": ("foot", ("{n}ft", "{n} ft", "{n} feet")),
    "mah": ("mah", ("{n}mah", "{n}k mah")),
    "gallon": ("gallon", ("{n}gal", "{n} gal", "{n}-gallon")),
    "mm": ("mm", ("{n}mm", "{n} millimeter")),
    "pound": ("pound", ("{n}lb", "{n} lbs", "{n}-pound")),
    "person": ("person", ("{n}p", "{n} man", "{n}-person")),
}

FILLERS = ("best", "cheap", "top rated", "high quality", "for home", "on sale", "new", "premium",
           "gift", "for men", "for women", "heavy duty", "deal", "durable", "2024")
# Marketing phrases in titles: the fillers above hit them, as over-specified queries do in real search.
TITLE_MARKETING = ("Premium Quality", "Best Seller", "for Home and Office", "Great Gift for Men and Women",
                   "New 2024 Model", "Heavy Duty", "High Quality Durable Design", "Top Rated Deal",
                   "", "", "", "", "", "")

NOISE_KINDS = ("misspelling", "synonym", "abbreviation", "unit_variant", "split_join",
               "over_specification", "under_specification")


@dataclass(frozen=True)
class NoiseRates:
    """How often each noise kind is picked (relative weights) and how many kinds a query gets."""

    clean_fraction: float = 0.15
    weights: dict[str, float] = field(default_factory=lambda: {
        "misspelling": 0.30, "synonym": 0.25, "abbreviation": 0.18, "unit_variant": 0.15,
        "split_join": 0.15, "over_specification": 0.15, "under_specification": 0.08})
    extra_kind_probability: float = 0.4
    max_kinds: int = 3
