"""The synthetic catalog's vocabulary: product types, brands, colours, materials, units, and the
shopper lexicon (colloquial synonyms, abbreviations, compounds, filler) that the noise draws from.

The lexicon is fixed, not random: a given canonical word always has the same few noisy forms,
so a rewriter can learn the mapping from a few thousand (noisy, canonical) pairs. Catalog text
uses only the canonical words; shopper words never appear in it, which is why noisy queries
retrieve fewer relevant products than their canonical rewrites.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from minielm.errors import InputError


@dataclass(frozen=True)
class ProductType:
    name: str  # canonical phrase used in titles and canonical queries
    category: str
    materials: tuple[str, ...]
    unit: str | None  # size unit (see UNITS) or None for named sizes / no size
    sizes: tuple[str, ...]  # size values (numbers for a unit, names otherwise, may be empty)
    base_price: float
    synonyms: tuple[str, ...] = ()  # what shoppers call it; never in catalog text
    short: str | None = None  # under-specified form (head noun)
    complements: tuple[str, ...] = ()
    substitutes: tuple[str, ...] = ()


_APPAREL_SIZES = ("small", "medium", "large", "extra large")
_BED_SIZES = ("twin", "full", "queen", "king")

_HAND_WRITTEN_TYPES: tuple[ProductType, ...] = (
    # kitchen
    ProductType(
        "pressure cooker",
        "kitchen",
        ("stainless steel", "aluminum"),
        "quart",
        ("3", "6", "8"),
        89,
        ("instapot", "instant pot"),
        "cooker",
        ("sealing ring", "steamer basket"),
        ("slow cooker",),
    ),
    ProductType(
        "slow cooker",
        "kitchen",
        ("stainless steel", "ceramic"),
        "quart",
        ("4", "6", "7"),
        49,
        ("crockpot", "crock pot"),
        "cooker",
        ("slow cooker liners",),
        ("pressure cooker", "dutch oven"),
    ),
    ProductType(
        "dutch oven",
        "kitchen",
        ("cast iron", "enameled cast iron"),
        "quart",
        ("5", "6", "7"),
        69,
        ("casserole pot",),
        "oven",
        ("pot holder",),
        ("slow cooker", "stock pot"),
    ),
    ProductType(
        "stock pot",
        "kitchen",
        ("stainless steel", "aluminum"),
        "quart",
        ("8", "12", "16"),
        39,
        ("soup pot",),
        "pot",
        ("pot holder",),
        ("dutch oven",),
    ),
    ProductType(
        "frying pan",
        "kitchen",
        ("cast iron", "nonstick", "stainless steel"),
        "inch",
        ("8", "10", "12"),
        35,
        ("skillet",),
        "pan",
        ("pot holder",),
        ("stock pot",),
    ),
    ProductType(
        "electric kettle",
        "kitchen",
        ("stainless steel", "glass", "plastic"),
        "liter",
        ("1", "1.5", "1.7"),
        29,
        ("water boiler", "teakettle"),
        "kettle",
        ("tea infuser",),
        ("coffee maker",),
    ),
    ProductType(
        "coffee maker",
        "kitchen",
        ("stainless steel", "plastic"),
        "cup",
        ("4", "10", "12"),
        59,
        ("coffee machine", "drip brewer"),
        "maker",
        ("coffee filters",),
        ("electric kettle",),
    ),
    ProductType(
        "coffee filters",
        "kitchen",
        ("paper", "bamboo"),
        "count",
        ("100", "200"),
        7,
        ("filter papers",),
        "filters",
        ("coffee maker",),
    ),
    ProductType(
        "cutting board",
        "kitchen",
        ("bamboo", "plastic", "wood"),
        "inch",
        ("12", "16", "18"),
        22,
        ("chopping block",),
        "board",
        ("chef knife",),
    ),
    ProductType(
        "chef knife",
        "kitchen",
        ("stainless steel", "carbon steel"),
        "inch",
        ("6", "8", "10"),
        45,
        ("cooks knife",),
        "knife",
        ("cutting board", "knife sharpener"),
    ),
    ProductType(
        "knife sharpener",
        "kitchen",
        ("ceramic", "diamond"),
        None,
        (),
        19,
        ("honing tool",),
        "sharpener",
        ("chef knife",),
    ),
    ProductType(
        "water bottle",
        "kitchen",
        ("stainless steel", "plastic", "glass"),
        "ounce",
        ("16", "24", "32"),
        24,
        ("thermos", "drink flask"),
        "bottle",
        ("bottle brush",),
    ),
    ProductType(
        "sealing ring", "kitchen", ("silicone",), "quart", ("3", "6", "8"), 9, ("gasket",), "ring", ("pressure cooker",)
    ),
    ProductType(
        "steamer basket",
        "kitchen",
        ("stainless steel", "silicone"),
        None,
        (),
        14,
        ("veggie steamer",),
        "basket",
        ("pressure cooker",),
    ),
    ProductType(
        "slow cooker liners",
        "kitchen",
        ("plastic",),
        "count",
        ("8", "16"),
        6,
        ("crockpot bags",),
        "liners",
        ("slow cooker",),
    ),
    ProductType(
        "pot holder",
        "kitchen",
        ("cotton", "silicone"),
        "pack",
        ("2", "4"),
        11,
        ("oven mitt",),
        "holder",
        ("dutch oven", "frying pan"),
    ),
    ProductType(
        "tea infuser",
        "kitchen",
        ("stainless steel", "silicone"),
        None,
        (),
        8,
        ("tea strainer",),
        "infuser",
        ("electric kettle",),
    ),
    ProductType(
        "bottle brush", "kitchen", ("nylon", "silicone"), None, (), 7, ("scrub wand",), "brush", ("water bottle",)
    ),
    # furniture
    ProductType(
        "bedside table",
        "furniture",
        ("wood", "oak", "metal"),
        "inch",
        ("18", "24"),
        79,
        ("nightstand", "night stand"),
        "table",
        ("table lamp",),
        ("storage bin",),
    ),
    ProductType(
        "bookshelf",
        "furniture",
        ("wood", "metal"),
        "tier",
        ("3", "4", "5"),
        99,
        ("bookcase",),
        None,
        (),
        ("storage bin",),
    ),
    ProductType(
        "office chair",
        "furniture",
        ("mesh", "leather", "fabric"),
        None,
        (),
        149,
        ("desk chair", "computer seat"),
        "chair",
        ("standing desk",),
    ),
    ProductType(
        "standing desk",
        "furniture",
        ("wood", "metal"),
        "inch",
        ("48", "55", "63"),
        249,
        ("sit stand desk", "standup desk"),
        "desk",
        ("office chair", "laptop stand"),
    ),
    ProductType(
        "sofa",
        "furniture",
        ("leather", "fabric", "velvet"),
        "seat",
        ("2", "3"),
        499,
        ("couch", "settee"),
        None,
        ("throw pillow",),
    ),
    ProductType(
        "bed frame", "furniture", ("wood", "metal"), None, _BED_SIZES, 199, ("bed base",), "frame", ("mattress",)
    ),
    ProductType(
        "mattress",
        "furniture",
        ("memory foam", "latex"),
        None,
        _BED_SIZES,
        399,
        ("bed topper",),
        None,
        ("bed frame", "bed sheets"),
    ),
    # apparel
    ProductType(
        "running shoes",
        "apparel",
        ("mesh", "leather"),
        "size",
        ("8", "9", "10", "11"),
        79,
        ("sneakers", "trainers"),
        "shoes",
        ("athletic socks",),
    ),
    ProductType(
        "athletic socks",
        "apparel",
        ("cotton", "wool"),
        "pack",
        ("3", "6"),
        15,
        ("gym socks",),
        "socks",
        ("running shoes",),
    ),
    ProductType("t-shirt", "apparel", ("cotton", "polyester"), None, _APPAREL_SIZES, 14, ("tee",), "shirt", ()),
    ProductType(
        "hooded sweatshirt", "apparel", ("cotton", "fleece"), None, _APPAREL_SIZES, 39, ("hoodie",), "sweatshirt", ()
    ),
    ProductType(
        "rain jacket",
        "apparel",
        ("nylon", "polyester"),
        None,
        _APPAREL_SIZES,
        69,
        ("raincoat", "slicker"),
        "jacket",
        (),
        ("hooded sweatshirt",),
    ),
    ProductType(
        "winter gloves", "apparel", ("wool", "leather", "fleece"), None, _APPAREL_SIZES, 19, ("mittens",), "gloves", ()
    ),
    ProductType(
        "yoga pants", "apparel", ("spandex", "cotton"), None, _APPAREL_SIZES, 29, ("leggings",), "pants", ("yoga mat",)
    ),
    ProductType(
        "backpack",
        "apparel",
        ("nylon", "canvas", "leather"),
        "liter",
        ("20", "30", "40"),
        49,
        ("rucksack", "bookbag"),
        None,
        ("water bottle",),
    ),
    # electronics
    ProductType(
        "wireless headphones",
        "electronics",
        ("plastic", "aluminum"),
        None,
        (),
        99,
        ("bluetooth headset", "cordless cans"),
        "headphones",
        ("headphone case",),
        ("wireless earbuds",),
    ),
    ProductType(
        "wireless earbuds",
        "electronics",
        ("plastic",),
        None,
        (),
        79,
        ("earphones", "earpods"),
        "earbuds",
        ("phone charger",),
        ("wireless headphones",),
    ),
    ProductType(
        "headphone case",
        "electronics",
        ("nylon", "leather"),
        None,
        (),
        15,
        ("headset pouch",),
        "case",
        ("wireless headphones",),
    ),
    ProductType(
        "phone charger",
        "electronics",
        ("plastic",),
        "watt",
        ("20", "30", "65"),
        19,
        ("charging block", "power adapter"),
        "charger",
        ("usb c cable",),
        ("power bank",),
    ),
    ProductType(
        "usb c cable",
        "electronics",
        ("nylon", "braided nylon"),
        "foot",
        ("3", "6", "10"),
        9,
        ("type c cord", "charging cord"),
        "cable",
        ("phone charger",),
    ),
    ProductType(
        "computer monitor",
        "electronics",
        ("plastic", "aluminum"),
        "inch",
        ("24", "27", "32"),
        229,
        ("pc screen", "display screen"),
        "monitor",
        ("laptop stand",),
    ),
    ProductType(
        "laptop stand",
        "electronics",
        ("aluminum", "plastic", "wood"),
        None,
        (),
        35,
        ("laptop riser",),
        "stand",
        ("computer monitor",),
    ),
    ProductType(
        "wireless mouse", "electronics", ("plastic",), None, (), 25, ("cordless mouse",), "mouse", ("mouse pad",)
    ),
    ProductType(
        "mouse pad",
        "electronics",
        ("fabric", "leather"),
        "inch",
        ("9", "12"),
        10,
        ("mouse mat",),
        "pad",
        ("wireless mouse",),
    ),
    ProductType(
        "power bank",
        "electronics",
        ("plastic", "aluminum"),
        "mah",
        ("10000", "20000"),
        39,
        ("portable charger", "battery pack"),
        None,
        ("usb c cable",),
        ("phone charger",),
    ),
    # home
    ProductType(
        "bath towel",
        "home",
        ("cotton", "microfiber"),
        "pack",
        ("2", "4", "6"),
        29,
        ("shower towel",),
        "towel",
        ("shower curtain",),
    ),
    ProductType(
        "bed sheets",
        "home",
        ("cotton", "microfiber", "linen"),
        None,
        _BED_SIZES,
        45,
        ("sheet set",),
        "sheets",
        ("mattress", "throw pillow"),
    ),
    ProductType(
        "throw pillow",
        "home",
        ("velvet", "cotton", "linen"),
        "inch",
        ("18", "20"),
        19,
        ("cushion", "accent pillow"),
        "pillow",
        ("sofa",),
    ),
    ProductType(
        "shower curtain",
        "home",
        ("polyester", "vinyl"),
        "inch",
        ("72",),
        17,
        ("bath curtain",),
        "curtain",
        ("bath towel",),
    ),
    ProductType(
        "table lamp",
        "home",
        ("ceramic", "metal", "glass"),
        None,
        (),
        39,
        ("desk light", "reading light"),
        "lamp",
        ("bedside table",),
    ),
    ProductType(
        "storage bin",
        "home",
        ("plastic", "fabric"),
        "quart",
        ("12", "30", "64"),
        16,
        ("storage tote", "organizer box"),
        "bin",
        (),
        ("bookshelf",),
    ),
    ProductType(
        "trash can",
        "home",
        ("stainless steel", "plastic"),
        "gallon",
        ("8", "13"),
        45,
        ("garbage can", "waste basket"),
        "can",
        ("trash bags",),
    ),
    ProductType(
        "trash bags",
        "home",
        ("plastic",),
        "gallon",
        ("13", "30"),
        12,
        ("garbage bags", "bin liners"),
        "bags",
        ("trash can",),
    ),
    # sports and outdoor
    ProductType(
        "yoga mat",
        "sports",
        ("rubber", "tpe", "pvc"),
        "mm",
        ("4", "6", "8"),
        29,
        ("exercise mat", "workout mat"),
        "mat",
        ("yoga block",),
    ),
    ProductType(
        "yoga block", "sports", ("cork", "foam"), "pack", ("1", "2"), 12, ("yoga brick",), "block", ("yoga mat",)
    ),
    ProductType(
        "dumbbells",
        "sports",
        ("cast iron", "rubber", "neoprene"),
        "pound",
        ("5", "10", "20"),
        39,
        ("hand weights", "free weights"),
        None,
        ("yoga mat",),
    ),
    ProductType(
        "camping tent",
        "sports",
        ("nylon", "polyester"),
        "person",
        ("2", "4", "6"),
        129,
        ("dome shelter",),
        "tent",
        ("sleeping bag",),
    ),
    ProductType(
        "sleeping bag", "sports", ("polyester", "down"), None, (), 59, ("sleep sack",), "bag", ("camping tent",)
    ),
    ProductType("garden hose", "sports", ("rubber", "vinyl"), "foot", ("50", "100"), 35, ("water hose",), "hose", ()),
    ProductType(
        "bike helmet",
        "sports",
        ("plastic",),
        None,
        ("small", "medium", "large"),
        45,
        ("bicycle helmet", "cycling helmet"),
        "helmet",
        (),
    ),
)

# The long tail of the catalog, one line per type: name | unit | sizes | shopper synonyms | head noun.
# Materials come from the category (below); complements and substitutes are left to the hand-written types.
_EXTENDED_TYPES = {
    "kitchen": """
garlic press||| garlic crusher; garlic mincer | press
can opener||| tin opener; can cutter | opener
mixing bowl|quart|2 4 6| prep bowl; batter bowl | bowl
measuring cups|count|4 6| measure cups; baking cups | cups
baking sheet|inch|13 18| cookie sheet; sheet pan | sheet
rolling pin|inch|12 18| dough roller; pastry roller | pin
salad spinner||| lettuce dryer; salad dryer | spinner
food processor|cup|8 12 14| food chopper; veggie chopper | processor
stand mixer|quart|5 6| cake mixer; dough mixer | mixer
hand blender|watt|300 500| immersion blender; stick blender | blender
toaster oven|liter|10 20| countertop oven; mini oven | oven
air fryer|quart|4 6 8| airfryer; oilless fryer | fryer
rice cooker|cup|3 6 10| rice steamer; rice maker | cooker
ice cube tray|count|1 2 4| ice mold; ice tray | tray
spice rack|tier|2 3| spice organizer; seasoning rack | rack
dish rack||| dish drainer; drying rack | rack
lunch box||| bento box; lunch container | box
food storage containers|count|10 20| meal prep containers; tupperware | containers
wine glasses|count|2 4 6| stemware; wine goblets | glasses
coffee mug|ounce|12 16| coffee cup; tea mug | mug
travel mug|ounce|12 16 20| tumbler; commuter cup | mug
french press|ounce|34 51| coffee press; press pot | press
tea kettle|quart|2 3| stovetop kettle; whistling kettle | kettle
paper towel holder||| towel rod; kitchen roll holder | holder
kitchen scale||| food scale; baking scale | scale
meat thermometer||| cooking thermometer; probe thermometer | thermometer
vegetable peeler||| potato peeler; veg peeler | peeler
cheese grater||| box grater; zester | grater
""",
    "furniture": """
coffee table|inch|36 42 48| cocktail table; center table | table
dining table|seat|4 6| dinner table; kitchen table | table
bar stool|inch|24 30| counter stool; high stool | stool
accent chair||| armchair; side chair | chair
recliner||| lazy boy; reclining chair |
futon|||sofa bed; sleeper couch |
tv stand|inch|55 65 75| media console; entertainment center | stand
shoe rack|tier|3 4 5| shoe organizer; shoe shelf | rack
wardrobe||| armoire; clothes closet |
dresser|||chest of drawers; bureau |
filing cabinet|||file cabinet; file drawer | cabinet
bean bag chair|||beanbag; sack chair | chair
ottoman|||footstool; foot rest |
bunk bed|||double decker bed; loft bed | bed
vanity table|||makeup table; dressing table | table
""",
    "apparel": """
denim jeans|size|28 30 32 34| blue jeans; denims | jeans
rain boots|size|7 8 9 10| wellies; gumboots | boots
hiking boots|size|8 9 10 11| trekking boots; trail boots | boots
flip flops|size|7 8 9 10| thongs; beach sandals | flops
baseball cap|||ball cap; snapback | cap
winter hat|||beanie; knit cap | hat
wool scarf|||muffler; neck wrap | scarf
leather belt|inch|32 34 36| waist belt; dress belt | belt
swim trunks|||board shorts; swim shorts | trunks
sports bra|||workout bra; athletic bra | bra
pajama set|||pjs; sleepwear set | set
dress shirt|||button down; button up shirt | shirt
puffer jacket|||down jacket; quilted coat | jacket
compression socks|pack|3 6| support socks; flight socks | socks
wallet|||billfold; card holder |
sunglasses|||shades; sun glasses |
wrist watch|||wristwatch; timepiece | watch
""",
    "electronics": """
bluetooth speaker|watt|10 20 40| portable speaker; wireless speaker | speaker
smart watch|||smartwatch; fitness watch | watch
fitness tracker|||activity tracker; step counter | tracker
hdmi cable|foot|3 6 10| hdmi cord; hdmi lead | cable
surge protector|count|6 8 12| power strip; outlet strip | protector
mechanical keyboard|||gaming keyboard; clicky keyboard | keyboard
webcam|||web camera; usb camera |
external hard drive|tb|1 2 4| portable drive; backup drive | drive
usb flash drive|gb|32 64 128| thumb drive; memory stick | drive
wifi router|||wireless router; internet router | router
tablet stand|||ipad holder; tablet holder | stand
phone case|||phone cover; mobile case | case
screen protector|pack|2 3| tempered glass; glass protector | protector
smart plug|pack|2 4| wifi plug; smart outlet | plug
ring light|inch|10 12 18| selfie light; circle light | light
dash cam|||dashboard camera; car camera | cam
security camera|||cctv camera; surveillance camera | camera
gaming headset|||gamer headphones; gaming headphones | headset
""",
    "home": """
area rug|foot|5 8| floor rug; carpet | rug
blackout curtains|inch|63 84 96| room darkening curtains; dark curtains | curtains
duvet cover|||comforter cover; quilt cover | cover
weighted blanket|pound|15 20| heavy blanket; gravity blanket | blanket
throw blanket|||sofa blanket; couch throw | blanket
memory foam pillow|||bed pillow; sleeping pillow | pillow
bath mat|||bathroom rug; shower mat | mat
laundry basket|||hamper; clothes basket | basket
wall clock|inch|10 12 14| hanging clock; kitchen clock | clock
picture frame|inch|5 8 11| photo frame; photo holder | frame
candle|ounce|8 12 16| scented candle; jar candle |
air purifier|||air cleaner; air filter machine | purifier
humidifier|liter|2 4 6| mist maker; vaporizer |
space heater|watt|750 1500| room heater; portable heater | heater
desk fan|inch|6 9 12| table fan; personal fan | fan
vacuum cleaner|||hoover; vac | cleaner
robot vacuum|||robovac; robotic cleaner | vacuum
mop|||floor mop; spin mop |
step ladder|step|2 3 4| step stool; folding ladder | ladder
tool box|inch|16 19 22| toolbox; tool chest | box
cordless drill|volt|12 18 20| power drill; drill driver | drill
led light bulbs|pack|4 8 12| led bulbs; light globes | bulbs
""",
    "sports": """
jump rope|foot|9 10| skipping rope; speed rope | rope
resistance bands|pack|3 5| exercise bands; workout bands | bands
kettlebell|pound|15 25 35| kettle bell; swing weight |
foam roller|inch|13 18 36| muscle roller; massage roller | roller
pull up bar|||chin up bar; doorway bar | bar
basketball|size|5 6 7| hoops ball; bball |
soccer ball|size|3 4 5| football; futbol | ball
tennis racket|||tennis racquet; racquet | racket
golf balls|pack|12 24| golf ball set; practice balls | balls
fishing rod|foot|6 7| fishing pole; casting rod | rod
hiking backpack|liter|30 40 50| hiking pack; daypack | backpack
camping chair|||folding chair; camp chair | chair
cooler|quart|25 45 65| ice chest; cool box |
headlamp|||head torch; head light |
trekking poles|||hiking poles; walking sticks | poles
swim goggles|||swimming goggles; pool goggles | goggles
bike lock|||bicycle lock; cycle lock | lock
""",
    "beauty": """
hair dryer|watt|1200 1875| blow dryer; hairdryer | dryer
hair straightener|inch|1 1.5| flat iron; straightening iron | straightener
electric toothbrush|||power toothbrush; sonic toothbrush | toothbrush
makeup brushes|pack|5 10 15| cosmetic brushes; brush set | brushes
shampoo|ounce|12 16 32| hair wash; hair shampoo |
conditioner|ounce|12 16 32| hair conditioner; detangler |
body lotion|ounce|8 16| body cream; moisturizer | lotion
sunscreen|ounce|3 6| sunblock; sun cream |
nail clippers|||nail cutter; toenail clippers | clippers
electric shaver|||electric razor; shaver |
""",
    "pets": """
dog bed|inch|24 30 36| dog mattress; pet bed | bed
cat litter|pound|20 40| kitty litter; cat sand | litter
dog leash|foot|4 6| dog lead; pet leash | leash
pet feeder|||automatic feeder; food dispenser | feeder
cat tree|inch|36 52 70| cat tower; cat condo | tree
dog harness|||no pull harness; walking harness | harness
chew toy|pack|2 4 6| dog chew; chew bone | toy
fish tank|gallon|5 10 20| aquarium; fish bowl | tank
""",
    "toys": """
building blocks|count|100 500 1000| construction bricks; building bricks | blocks
jigsaw puzzle|count|500 1000| puzzle; puzzle game | puzzle
board game|||family game; tabletop game | game
stuffed animal|inch|8 12 18| plush toy; teddy | animal
remote control car|||rc car; radio car | car
art supplies|count|50 100| drawing kit; craft kit | supplies
""",
    "office": """
desk organizer|||desk caddy; office organizer | organizer
notebook|count|100 200| notepad; journal |
ballpoint pens|pack|10 24| biros; writing pens | pens
sticky notes|pack|6 12| post its; memo notes | notes
stapler|||staple gun; paper stapler |
whiteboard|inch|24 36 48| dry erase board; white board |
paper shredder|sheet|8 12| shredder; document shredder |
label maker|||label printer; labeler | maker
""",
}

# Materials a type of the long tail is made of, by category (each type takes two or three, chosen by name).
CATEGORY_MATERIALS = {
    "kitchen": ("stainless steel", "plastic", "glass", "silicone", "bamboo", "ceramic"),
    "furniture": ("wood", "metal", "oak", "fabric", "leather"),
    "apparel": ("cotton", "polyester", "nylon", "wool", "leather", "denim"),
    "electronics": ("plastic", "aluminum", "silicone"),
    "home": ("cotton", "plastic", "ceramic", "glass", "metal", "microfiber"),
    "sports": ("nylon", "rubber", "plastic", "aluminum", "foam"),
    "beauty": ("plastic", "ceramic", "glass"),
    "pets": ("nylon", "plastic", "rubber", "plush"),
    "toys": ("plastic", "wood", "plush"),
    "office": ("paper", "plastic", "metal"),
}
_EXTENDED_PRICES = {
    "kitchen": 25,
    "furniture": 180,
    "apparel": 35,
    "electronics": 60,
    "home": 40,
    "sports": 35,
    "beauty": 20,
    "pets": 25,
    "toys": 20,
    "office": 15,
}


def _stable_fraction(text: str) -> float:
    """A number in [0, 1) that depends only on ``text`` (never on a seed or Python's hash salt)."""
    return zlib.crc32(text.encode()) / 2**32


def _extended_types() -> tuple[ProductType, ...]:
    types = []
    for category, table in _EXTENDED_TYPES.items():
        materials = CATEGORY_MATERIALS[category]
        for line in table.strip().splitlines():
            name, unit, sizes, synonyms, short = (part.strip() for part in line.split("|"))
            start = int(_stable_fraction(name) * len(materials))
            count = 2 + int(_stable_fraction(name + ":n") * 2)
            chosen = tuple(materials[(start + i) % len(materials)] for i in range(count))
            types.append(
                ProductType(
                    name,
                    category,
                    tuple(dict.fromkeys(chosen)),
                    unit or None,
                    tuple(sizes.split()),
                    _EXTENDED_PRICES[category] * (0.6 + _stable_fraction(name + ":price")),
                    tuple(s.strip() for s in synonyms.split(";") if s.strip()),
                    short or None,
                )
            )
    return tuple(types)


PRODUCT_TYPES: tuple[ProductType, ...] = _HAND_WRITTEN_TYPES + _extended_types()
TYPES_BY_NAME = {t.name: t for t in PRODUCT_TYPES}
assert len(TYPES_BY_NAME) == len(PRODUCT_TYPES), "product type names must be unique"
CATEGORIES = tuple(dict.fromkeys(t.category for t in PRODUCT_TYPES))

# Brand names are generated from syllables (fixed, not seeded): made-up words like real brands, 40 per category.
_BRAND_HEADS = (
    "ab al ar bel bri cal cor dar el fen gal hal jun kel lum mar nor ob pal quin ral sol tor ul val wen xan yor zel "
    "vex tri mon lux nov orb pex rho sky ten"
).split()
_BRAND_TAILS = "ora ix ex on ara ly io ant ico era ux wave tek ify ona ster vo ta gen ia".split()
_HAND_WRITTEN_BRANDS: dict[str, tuple[str, ...]] = {
    "kitchen": ("cookwell", "ironhearth", "zestra", "panora", "kitchara", "brewlux", "solvine"),
    "furniture": ("oakridge", "nordvik", "loftwell", "havenly", "timberline", "cozara"),
    "apparel": ("stridex", "northpeak", "velora", "kinetix", "urbanfox", "trailmark", "aerolite"),
    "electronics": ("voltara", "sonique", "pixelon", "ampere", "quantix", "nexbolt", "auralink"),
    "home": ("plushome", "serenia", "dwellio", "casabella", "linenra", "tidyco"),
    "sports": ("summitgear", "flexcore", "ironpeak", "trekora", "zenfit", "ridgeway"),
}
BRANDS_PER_CATEGORY = 40


def _generated_brands() -> dict[str, tuple[str, ...]]:
    pool = sorted(
        {head + tail for head in _BRAND_HEADS for tail in _BRAND_TAILS},
        key=lambda b: _stable_fraction("brand:" + b),
    )
    taken = {b for brands in _HAND_WRITTEN_BRANDS.values() for b in brands}
    pool = [b for b in pool if b not in taken]
    brands = {}
    for number, category in enumerate(CATEGORIES):
        own = _HAND_WRITTEN_BRANDS.get(category, ())
        extra = pool[number * BRANDS_PER_CATEGORY : (number + 1) * BRANDS_PER_CATEGORY - len(own)]
        brands[category] = own + tuple(extra)
    return brands


BRANDS: dict[str, tuple[str, ...]] = _generated_brands()
ALL_BRANDS = frozenset(b for brands in BRANDS.values() for b in brands)

COLOURS = (
    "black white gray silver red blue navy green pink beige brown purple yellow orange gold teal ivory "
    "burgundy olive charcoal"
).split()

# Product features; some are negations a rewrite must keep ("bpa free", "without lid", "no assembly").
FEATURES: dict[str, tuple[str, ...]] = {
    "kitchen": ("dishwasher safe", "bpa free", "insulated", "leak proof", "without lid", "with lid", "non toxic"),
    "furniture": ("adjustable", "foldable", "no assembly", "with drawers", "without arms", "with storage"),
    "apparel": ("waterproof", "slim fit", "moisture wicking", "quick dry", "no show", "wide fit"),
    "electronics": ("noise cancelling", "waterproof", "fast charging", "rechargeable", "without cable", "4k"),
    "home": ("machine washable", "scent free", "odor free", "cordless", "without remote", "energy saving"),
    "sports": ("lightweight", "non slip", "foldable", "waterproof", "without pump", "adjustable"),
    "beauty": ("fragrance free", "sulfate free", "cordless", "travel size", "paraben free", "unscented"),
    "pets": ("grain free", "no pull", "waterproof", "washable", "chew proof", "without bowl"),
    "toys": ("battery free", "for toddlers", "educational", "without batteries", "stem"),
    "office": ("refillable", "acid free", "without staples", "wireless", "recycled"),
}
ALL_FEATURES = tuple(dict.fromkeys(f for features in FEATURES.values() for f in features))

# Shopper forms that never appear in catalog text.
COLOUR_SYNONYMS = {
    "gray": ("grey",),
    "beige": ("tan", "khaki"),
    "purple": ("violet", "lilac"),
    "navy": ("dark blue", "navy blue"),
    "burgundy": ("maroon", "wine red"),
    "charcoal": ("dark grey",),
    "ivory": ("cream", "off white"),
    "teal": ("turquoise",),
    "gold": ("golden",),
    "olive": ("army green",),
}
MATERIAL_SYNONYMS = {
    "aluminum": ("aluminium", "alloy"),
    "stainless steel": ("inox", "steel"),
    "velvet": ("velour",),
    "spandex": ("lycra", "elastane"),
    "polyester": ("poly",),
    "memory foam": ("gel foam",),
    "rubber": ("rubberized",),
    "tpe": ("eco foam",),
    "wood": ("wooden", "timber"),
    "plastic": ("acrylic",),
    "leather": ("genuine leather", "faux leather"),
    "silicone": ("silicon",),
    "cotton": ("organic cotton",),
    "denim": ("jean",),
    "plush": ("fluffy",),
}
FEATURE_SYNONYMS = {
    "waterproof": ("water resistant",),
    "noise cancelling": ("noise canceling", "anc"),
    "dishwasher safe": ("dish washer safe",),
    "fast charging": ("quick charge", "rapid charging"),
    "lightweight": ("light weight", "ultralight"),
    "non slip": ("anti slip", "nonslip"),
    "leak proof": ("leakproof", "spill proof"),
    "foldable": ("folding", "collapsible"),
    "rechargeable": ("battery powered",),
    "machine washable": ("washer safe",),
}
ABBREVIATIONS = {
    "black": "blk",
    "white": "wht",
    "gray": "gry",
    "silver": "slvr",
    "brown": "brn",
    "green": "grn",
    "purple": "purp",
    "yellow": "ylw",
    "orange": "orng",
    "stainless steel": "ss",
    "cast iron": "ci",
    "polyester": "poly",
    "microfiber": "micro",
    "extra large": "xl",
    "large": "lg",
    "medium": "med",
    "small": "sm",
    "wireless": "wrls",
    "leather": "lthr",
    "bluetooth": "bt",
    "queen": "qn",
    "king": "kg",
    "computer": "comp",
    "waterproof": "wp",
    "adjustable": "adj",
    "rechargeable": "rechrg",
    "electric": "elec",
    "portable": "port",
    "automatic": "auto",
    "stainless": "stnls",
    "professional": "pro",
    "dishwasher safe": "dw safe",
}
# Compound words that shoppers split, and two-word phrases they join (both directions are noise).
SPLITS = {
    "bookshelf": "book shelf",
    "backpack": "back pack",
    "nonstick": "non stick",
    "microfiber": "micro fiber",
    "dumbbells": "dumb bells",
    "sweatshirt": "sweat shirt",
    "earbuds": "ear buds",
    "headphones": "head phones",
    "bedside": "bed side",
    "t-shirt": "t shirt",
    "mattress": "mat tress",
    "spandex": "span dex",
    "waterproof": "water proof",
    "lightweight": "light weight",
    "webcam": "web cam",
    "headlamp": "head lamp",
    "basketball": "basket ball",
    "whiteboard": "white board",
    "notebook": "note book",
    "sunglasses": "sun glasses",
    "wardrobe": "ward robe",
    "kettlebell": "kettle bell",
    "sunscreen": "sun screen",
}

# What a unit looks like in catalog text (canonical) and the variants shoppers type.
UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "quart": ("quart", ("{n}qt", "{n} qt", "{n}-quart", "{n} qts", "{n} quarts")),
    "inch": ("inch", ("{n}in", "{n} in", "{n}-inch", "{n} inches", '{n}"')),
    "liter": ("liter", ("{n}l", "{n} ltr", "{n} litre", "{n}-liter", "{n} liters")),
    "ounce": ("ounce", ("{n}oz", "{n} oz", "{n} fl oz", "{n} ounces")),
    "cup": ("cup", ("{n}c", "{n}-cup", "{n} cups")),
    "count": ("count", ("{n}ct", "{n} ct", "{n} pcs", "{n} pieces")),
    "pack": ("pack", ("{n}pk", "{n} pk", "pack of {n}", "{n} pack", "set of {n}")),
    "tier": ("tier", ("{n}-tier", "{n} shelves", "{n} shelf", "{n} tiers")),
    "seat": ("seater", ("{n}-seater", "{n} seats", "{n} person")),
    "size": ("size", ("sz {n}", "{n}m", "size{n}", "us {n}")),
    "watt": ("watt", ("{n}w", "{n} w", "{n}-watt", "{n} watts")),
    "foot": ("foot", ("{n}ft", "{n} ft", "{n} feet", "{n}'")),
    "mah": ("mah", ("{n}mah", "{n} mah battery")),
    "gallon": ("gallon", ("{n}gal", "{n} gal", "{n}-gallon", "{n} gallons")),
    "mm": ("mm", ("{n}mm", "{n} millimeter")),
    "pound": ("pound", ("{n}lb", "{n} lbs", "{n}-pound", "{n} pounds")),
    "person": ("person", ("{n}p", "{n} man", "{n}-person", "{n} people")),
    "tb": ("tb", ("{n}tb", "{n} terabyte")),
    "gb": ("gb", ("{n}gb", "{n} gig", "{n} gigabyte")),
    "volt": ("volt", ("{n}v", "{n} v", "{n}-volt")),
    "step": ("step", ("{n}-step", "{n} steps", "{n} step")),
    "sheet": ("sheet", ("{n}-sheet", "{n} sheets")),
}

# Words that add nothing a search engine can use: over-specification noise adds only these, and a
# rewrite may drop them. Never an attribute ("for men", "heavy duty", sizes or years are intent).
FILLERS = (
    "best",
    "cheap",
    "top rated",
    "high quality",
    "on sale",
    "new",
    "premium",
    "deal",
    "good",
    "buy",
    "affordable",
    "great",
    "nice",
    "popular",
    "best selling",
    "brand new",
    "online",
)
# Marketing phrases in titles: the fillers above hit them, as over-specified queries do in real search.
TITLE_MARKETING = (
    "Premium Quality",
    "Best Seller",
    "High Quality Design",
    "Top Rated Deal",
    "New Model",
    "Great Value",
    "",
    "",
    "",
    "",
    "",
    "",
)

# Things shoppers search for that this catalog does not sell: the right rewrite is none.
OUT_OF_CATALOG_QUERIES = (
    "guitar strings",
    "acoustic guitar",
    "dog food",
    "cat food wet",
    "car tires",
    "motor oil 5w30",
    "windshield wipers",
    "lipstick matte red",
    "mascara waterproof",
    "vitamin d3 5000 iu",
    "protein powder chocolate",
    "printer ink 64xl",
    "aa batteries 24 pack",
    "birthday card",
    "gift wrapping paper",
    "wedding dress",
    "engagement ring",
    "baby formula",
    "diapers size 4",
    "fishing lures",
    "potting soil",
    "tomato seeds",
    "lawn mower",
    "snow shovel",
    "paint roller",
    "drywall screws",
    "kids chapter books",
    "cookbook vegetarian",
    "jigsaw blade",
    "violin rosin",
    "piano keyboard 61 keys",
    "drum sticks 5a",
    "ps5 controller",
    "nintendo switch game",
    "coffee beans dark roast",
    "green tea bags",
    "olive oil extra virgin",
    "peanut butter crunchy",
    "dish soap",
    "laundry detergent pods",
    "toilet paper 12 rolls",
    "hand sanitizer",
    "face masks disposable",
    "contact lens solution",
    "reading glasses +2.0",
    "hearing aid batteries",
    "car seat cover",
    "bike tire tube 26",
    "surfboard wax",
    "ski goggles",
)

NOISE_KINDS = (
    "misspelling",
    "phonetic",
    "synonym",
    "abbreviation",
    "unit_variant",
    "split_join",
    "over_specification",
    "under_specification",
)
# Classes a query is reported under besides its noise kinds.
CLEAN_CLASS = "clean"
OUT_OF_CATALOG_CLASS = "out_of_catalog"

# Shares of lexicon forms (synonyms, abbreviations, unit variants) that only one split's queries use: test
# queries measure forms never seen in training, and validation has its own unseen forms (disjoint from the test
# ones) so that accepting a form the model never saw can be calibrated without looking at test.
HELDOUT_FORM_SHARE = 0.3
VALIDATION_FORM_SHARE = 0.1


def reserved_split(form: str) -> str | None:
    """The split a lexicon form is reserved for ("test", "validation"), or None when every split may use it
    (a fixed function of the form)."""
    fraction = _stable_fraction("heldout:" + form)
    if fraction < HELDOUT_FORM_SHARE:
        return "test"
    if fraction < HELDOUT_FORM_SHARE + VALIDATION_FORM_SHARE:
        return "validation"
    return None


def is_heldout_form(form: str) -> bool:
    """Whether a lexicon form is kept out of train and validation."""
    return reserved_split(form) == "test"


def usable_in(form: str, split: str) -> bool:
    """Whether queries of ``split`` may use ``form``: forms reserved for another split are never drawn."""
    reserved = reserved_split(form)
    return reserved is None or reserved == split


@dataclass(frozen=True)
class NoiseRates:
    """How often each noise kind is picked (relative weights), how many kinds a query gets, and the
    share of queries for products the catalog does not sell."""

    clean_fraction: float = 0.15
    out_of_catalog_fraction: float = 0.05
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "misspelling": 0.30,
            "phonetic": 0.10,
            "synonym": 0.25,
            "abbreviation": 0.15,
            "unit_variant": 0.15,
            "split_join": 0.12,
            "over_specification": 0.12,
            "under_specification": 0.08,
        }
    )
    extra_kind_probability: float = 0.4
    max_kinds: int = 3
    second_typo_probability: float = 0.25  # a misspelled query gets one more typo this often

    def __post_init__(self) -> None:
        for name in ("clean_fraction", "out_of_catalog_fraction", "extra_kind_probability", "second_typo_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"NoiseRates.{name}: expected a value in [0, 1], got {value}")
        unknown = set(self.weights) - set(NOISE_KINDS)
        if unknown:
            raise InputError(f"NoiseRates.weights: unknown noise kinds {sorted(unknown)} (known: {NOISE_KINDS})")
        if self.max_kinds < 1:
            raise InputError(f"NoiseRates.max_kinds: expected >= 1, got {self.max_kinds}")
