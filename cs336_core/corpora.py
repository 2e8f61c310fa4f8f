"""Corpora: two embedded corpora that need no network, the handout's downloads, and document tools.

* `generate_stories`: simple children's stories in the TinyStories format, written by a procedural
  generator (characters with pronouns, places, objects, feelings, weather, eighteen plot shapes
  with dialogue and morals). Deterministic by seed, any size, streamed to disk.
* `stdlib_prose`: real English prose extracted from the running Python's standard library
  (docstrings, read with `ast` so no module is imported, plus `pydoc_data.topics`), the offline
  stand-in for OpenWebText.
* `download`: streamed, resumable, verified downloads of the handout's corpora (`CORPUS_SOURCES`).
* `iter_documents`, `split_documents`, `sample_documents`, `corpus_stats`: streaming, constant memory.
* `check_plausible_text`: a loud error for a "corpus" that is an HTML page, empty, or not text.

Documents are separated as in TinyStoriesV2: each document is followed by "\\n<|endoftext|>\\n".
Nothing here imports torch or Dagster.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import gzip
import hashlib
import json
import math
import os
import random
import re
import socket
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import warnings
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import Iterator

from cs336_core.files import PathLike, atomic_path, atomic_write_json, prepare_destination, remove_stale_partials
from cs336_core.progress import ProgressFn

ENDOFTEXT = "<|endoftext|>"
PREVIEW_CHARS = 600
_READ_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

_HF_TINYSTORIES = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
_HF_OWT = "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main"
# The handout's download URLs (section 1.3). The .gz files are decompressed by `download`.
CORPUS_SOURCES: dict[str, dict[str, str]] = {
    "tinystories": {
        "train": f"{_HF_TINYSTORIES}/TinyStoriesV2-GPT4-train.txt",
        "valid": f"{_HF_TINYSTORIES}/TinyStoriesV2-GPT4-valid.txt",
    },
    "owt": {
        "train": f"{_HF_OWT}/owt_train.txt.gz",
        "valid": f"{_HF_OWT}/owt_valid.txt.gz",
    },
}


def _document_record(document: str, separator: str = ENDOFTEXT) -> str:
    return f"{document}\n{separator}\n"


def _preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


# ---------------------------------------------------------------------------------------------
# Procedural children's stories
# ---------------------------------------------------------------------------------------------

_GIRL_NAMES = (
    "Lily Mia Sue Anna Emma Lucy Zoe Ella Amy Rose Kate Molly Sara Daisy Ruby Nora Ivy Grace Maya "
    "Chloe Hannah Lola Bella Tina Jane Clara Ava Nina Poppy Luna Alice Olivia Sophie Emily Lisa Julia "
    "Ellie Stella Hazel Violet Penny Rosie Millie Greta Iris Willow Hope Abby Kitty Dora Wendy Fiona "
    "Heidi Tilly Mabel Pearl Lucia Mira Elsa Jenny"
).split()
_BOY_NAMES = (
    "Tom Ben Max Sam Jack Leo Tim Jake Finn Timmy Bobby Joe Noah Oscar Henry Billy Ollie Danny "
    "Lucas Toby Eli Jimmy Mark Peter Alex Theo Milo Ryan Luke Adam Charlie Felix Hugo Jonah Kevin "
    "Oliver Simon Teddy Victor Zack Arthur Benny Caleb Dylan Ethan Freddie George Harry Ivan Louis "
    "Marco Nick Otto Paul Rudy Sammy Walter Frank Bruno"
).split()
_PEOPLE_KINDS = {"she": "girl", "he": "boy"}
_ANIMAL_KINDS = (
    "cat dog puppy kitten bunny bird bear fox mouse frog duck owl squirrel pig cow horse lion "
    "elephant turtle monkey sheep goat deer hedgehog penguin giraffe zebra tiger rabbit hamster "
    "chicken goose donkey pony koala panda raccoon beaver otter seal whale dolphin crab ladybug "
    "butterfly bee snail parrot robin lamb kangaroo"
).split()
_HERO_ADJECTIVES = (
    "little happy kind brave curious shy silly small clever friendly gentle playful sleepy busy "
    "cheerful tiny funny quiet lively careful bright helpful honest polite smart strong young "
    "bouncy jolly proud eager patient clumsy chatty sweet wise loud calm lucky speedy fuzzy"
).split()
_PLACES = (
    "the park|the forest|the garden|the beach|the farm|the lake|the big hill|the playground|"
    "the market|the library|the zoo|the river|the meadow|the backyard|the school|the toy shop|"
    "the pond|the woods|grandma's house|the bakery|the old barn|the village|the sandbox|the field|"
    "the museum|the pool|the castle|the jungle|the mountain|the island|the harbor|the orchard|"
    "the cave|the bridge|the train station|the swimming pool|the ice rink|the fair|the circus|"
    "the doctor's office|the post office|the big city|the quiet street|the flower shop|the camp"
).split("|")
_COLORS = "red blue green yellow pink purple orange white black brown silver gray".split()
_THING_ADJECTIVES = tuple(_COLORS) + tuple(
    "shiny soft old new big small striped spotted sparkly wooden golden fluffy bright tiny "
    "heavy round magic funny squeaky fancy plastic".split())
_THINGS = (
    "ball|kite|teddy bear|toy car|hat|bike|doll|book|balloon|toy boat|drum|scarf|rock|train|"
    "puzzle|jump rope|umbrella|whistle|blanket|bucket|crown|robot|music box|marble|wagon|flute|"
    "truck|necklace|shovel|box of crayons|feather|shell|yo-yo|bell|spoon|cup|sock|key|"
    "backpack|sweater|mitten|pillow|lamp|clock|camera|guitar|piano|tambourine|rocket|airplane|"
    "dinosaur toy|bracelet|ring|watch|map|compass|flashlight|paintbrush|notebook|pencil|basket|"
    "bowl|vase|fishing rod|skateboard|scooter|helmet|sled|snow globe|treasure chest|jar|ribbon|"
    "button|coin|star sticker|toy horse|puppet|wand|mirror"
).split("|")
_TREATS = (
    "apple|cookie|piece of cake|sandwich|banana|candy|slice of pie|ice cream|cupcake|muffin|"
    "orange|jar of honey|piece of cheese|bowl of soup|carrot|pear|lollipop|pancake|bun|peach|"
    "plum|bunch of grapes|cherry|strawberry|slice of bread|cracker|donut|pretzel|cup of milk|"
    "waffle|bowl of berries|slice of pizza|chocolate bar|bag of popcorn|lemonade|watermelon|"
    "tomato|cookie with sprinkles|slice of melon|bowl of rice"
).split("|")
# (base form, -ing form)
_ACTIVITIES = (
    ("run in the grass", "running in the grass"), ("jump in puddles", "jumping in puddles"),
    ("sing songs", "singing songs"), ("dance", "dancing"), ("paint pictures", "painting pictures"),
    ("read books", "reading books"), ("climb trees", "climbing trees"),
    ("build towers with blocks", "building towers with blocks"),
    ("look at the stars", "looking at the stars"), ("swim in the lake", "swimming in the lake"),
    ("fly kites", "flying kites"), ("pick flowers", "picking flowers"),
    ("draw with chalk", "drawing with chalk"), ("play hide and seek", "playing hide and seek"),
    ("watch the clouds", "watching the clouds"), ("collect leaves", "collecting leaves"),
    ("bake cookies", "baking cookies"), ("play ball", "playing ball"),
    ("dig in the sand", "digging in the sand"), ("ride on the swing", "riding on the swing"),
    ("count the birds", "counting the birds"), ("make mud pies", "making mud pies"),
    ("ride a bike", "riding a bike"), ("skip stones", "skipping stones"),
    ("catch butterflies", "catching butterflies"), ("play the drums", "playing the drums"),
    ("build sandcastles", "building sandcastles"), ("roll down the hill", "rolling down the hill"),
    ("make paper boats", "making paper boats"), ("tell jokes", "telling jokes"),
    ("chase bubbles", "chasing bubbles"), ("play tag", "playing tag"),
    ("feed the ducks", "feeding the ducks"), ("plant seeds", "planting seeds"),
    ("look for shells", "looking for shells"), ("make snowmen", "making snowmen"),
    ("play dress up", "playing dress up"), ("whistle tunes", "whistling tunes"),
    ("hop like a frog", "hopping like a frog"), ("spin in circles", "spinning in circles"),
)
_GOOD_FEELINGS = "happy glad proud excited thankful joyful calm cheerful delighted thrilled pleased cozy relieved".split()
_BAD_FEELINGS = "sad worried scared upset lonely grumpy nervous frightened confused unhappy cross gloomy".split()
_GROWNUPS = "mom|dad|grandma|grandpa|big sister|big brother|teacher|aunt|uncle|neighbor".split("|")
_WEATHER = (
    "The sun was shining and the birds were singing.",
    "It was a warm and sunny day.",
    "The wind was blowing and the leaves were dancing.",
    "Big gray clouds were in the sky.",
    "Snow covered the ground like a soft white blanket.",
    "Soft rain was falling on the roofs.",
    "The sky was blue and the air was fresh.",
    "It was a cold morning and the grass was wet.",
    "The flowers were blooming and the bees were buzzing.",
    "It was a quiet evening and the sun was going down.",
    "Fog covered the hills like a thick gray cloud.",
    "The autumn leaves were red, orange, and yellow.",
    "It was so hot that even the dogs were sleeping in the shade.",
    "A cool breeze was blowing from the sea.",
    "Thunder rumbled far away.",
    "The moon was big and round that night.",
)
_HIDING_SPOTS = (
    "under a big leaf|behind a tree|under the bed|in a bush|next to the fence|under the slide|"
    "behind a rock|in the tall grass|under a bench|inside an old box|near the pond|in a hole|"
    "behind the curtain|under the table|in the sandbox|between two flower pots|inside a boot|"
    "under a pile of leaves|behind the shed|on a tree branch|in the mailbox|under the stairs|"
    "next to the gate|beside the mushrooms|inside the dog house"
).split("|")
_HIGH_SPOTS = (
    "on a high shelf|at the top of a tree|on the roof|on a tall wall|on top of the fridge|"
    "on top of the cupboard|in a high window|on the top step of a ladder|up on a lamp post|"
    "on a tall rock"
).split("|")
_FEARS = (
    ("a loud noise", "it was only the wind banging a door"),
    ("a big shadow", "it was only the shadow of a friendly tree"),
    ("the dark", "the dark was just the night, full of stars"),
    ("a growl in the bushes", "it was only a hungry puppy"),
    ("a strange light", "it was only a little firefly"),
    ("the deep water", "the water was not so deep near the shore"),
    ("a creaking sound", "it was only the old floor"),
    ("two glowing eyes", "it was only a sleepy cat on the fence"),
    ("a big wave", "the wave was small by the time it reached the sand"),
    ("a buzzing sound", "it was only a bee looking for flowers"),
    ("a tall monster", "it was only a coat hanging on a hook"),
    ("a scratching at the window", "it was only a branch moving in the wind"),
)
_TIMES = (
    "One day", "One morning", "One sunny afternoon", "One evening", "Early one morning",
    "One rainy day", "Last summer", "One cold winter day", "One spring morning", "On Saturday",
    "One windy day", "After lunch", "One bright day", "On a snowy morning", "Yesterday",
    "One autumn day",
)
_PET_NAMES = "Spot Fluffy Buddy Coco Patch Pip Biscuit Peanut Sunny Bubbles Pepper Ziggy Noodle Snowball".split()
_THENS = ("Then", "After that", "Soon", "After a while", "A moment later", "Later", "Next")
_OPENINGS = (
    "Once upon a time, there was a {hero_adj} {hero_kind} named {hero}.",
    "Once upon a time, in a small town, there lived a {hero_adj} {hero_kind} called {hero}.",
    "There was once a {hero_adj} {hero_kind} named {hero}. {He} lived near {place}.",
    "{hero} was a {hero_adj} {hero_kind} who loved to {activity}.",
    "Once there was a {hero_kind} named {hero}. {hero} was very {hero_adj}.",
    "In a little house by {place}, there lived a {hero_kind} named {hero}.",
)
_HABITS = (
    "{He} loved to {activity} every day.",
    "{His} favorite thing was {his} {thing_adj} {thing}.",
    "{He} liked {activity_ing} more than anything.",
    "Every day, {he} went to {place} to {activity}.",
)
_GENERIC_MORALS = (
    "{hero} learned that it is good to help your friends.",
    "{hero} learned that kindness is the best gift of all.",
    "{hero} learned that it is okay to ask for help.",
)
# Morals that fit each plot, so the ending depends on the story (something for a model to learn).
_PLOT_MORALS = {
    "lost_thing": ("{hero} learned to take good care of {his} things.",
                   "{hero} learned that a good friend helps you when you are {bad}."),
    "out_of_reach": ("{hero} learned that two friends can do more than one.",
                     "{hero} learned that it is okay to ask for help."),
    "sharing": ("{hero} learned that sharing makes everyone happy.",
                "{hero} learned that a treat tastes better when you share it."),
    "scared": ("{hero} learned that being brave is not the same as not being scared.",
               "{hero} learned that things are often less scary when you look closely."),
    "broken": ("{hero} learned that telling the truth is always best.",
               "{hero} learned that saying sorry can fix a lot."),
    "new_friend": ("{hero} learned that saying hello is the first step to a new friend.",
                   "{hero} learned that it is fun to try new things."),
    "rainy_day": ("{hero} learned that a rainy day can be fun too.",
                  "{hero} learned that there is always something good to find."),
    "race": ("{hero} learned that friends are more important than winning.",
             "{hero} learned that being kind is better than being first."),
    "helping": ("{hero} learned that even a small {hero_kind} can help.",
                "{hero} learned that helping others feels good."),
    "surprise": ("{hero} learned that surprises are best when you share them.",
                 "{hero} learned that being curious can lead to fun."),
    "baking": ("{hero} learned that a mess can be cleaned up when you work together.",
               "{hero} learned that gifts made with love are the best."),
    "garden": ("{hero} learned that good things take time.",
               "{hero} learned that plants, like friends, need care every day."),
    "party": ("{hero} learned that the best gifts come from the heart.",
              "{hero} learned that you do not need money to make someone happy."),
    "bedtime": ("{hero} learned that a story and a song can chase the worries away.",
                "{hero} learned that {his} {grownup} is always there when {he} needs help."),
    "trip": ("{hero} learned that an adventure is more fun with someone you love.",
             "{hero} learned to stay calm when things go wrong."),
    "clean_up": ("{hero} learned that we must take care of the world around us.",
                 "{hero} learned that many hands make light work."),
    "pet": ("{hero} learned that pets need love and care.",
            "{hero} learned that taking care of others is a big job, and a good one."),
    "try_again": ("{hero} learned that if you keep trying, you can do hard things.",
                  "{hero} learned that being patient is worth it."),
}
_ENDINGS = (
    "From that day on, {hero} and {friend} were best friends.",
    "{hero} smiled. It was the best day ever.",
    "And they all lived happily ever after.",
    "That night, {hero} went to bed with a big smile.",
    "{hero} hugged {his} {grownup} and said, \"Thank you!\"",
    "They played together until the sun went down.",
    "{hero} could not wait to come back to {place} again.",
    "{hero} and {friend} laughed and laughed.",
)

# Plots are sequences of beats; each beat lists alternative sentence templates (one is chosen) and
# may hold several sentences. Placeholders are filled from the story's cast and setting.
_PLOTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "lost_thing": (
        ("{hero} took {his} {thing_adj} {thing} to {place}.",
         "{hero} brought {his} {thing_adj} {thing} to {place} to play.",
         "{hero} and {his} {thing_adj} {thing} went to {place} together."),
        ("{He} played and played, but then {he} could not find {his} {thing}!",
         "{He} put the {thing} down to {activity}. When {he} looked back, the {thing} was gone!",
         "{Then}, {hero} looked around. {His} {thing} was not there anymore."),
        ("{hero} felt {bad}. \"Where is my {thing}?\" {he} cried.",
         "{hero} was very {bad}. {He} sat down and started to cry.",
         "\"Oh no! I lost my {thing}!\" said {hero}. {He} felt very {bad}."),
        ("{friend}, a {friend_adj} {friend_kind}, saw {him} and asked, \"Why are you {bad}?\"",
         "Just then, {friend_called} came by. \"What is wrong?\" asked {friend}.",
         "A {friend_adj} {friend_kind} named {friend} heard {him}. \"Can I help you?\" {fhe} asked."),
        ("\"I lost my {thing},\" said {hero}. \"Let's look for it together,\" said {friend}.",
         "{hero} told {friend} about the {thing}. {friend} said, \"Don't worry. I will help you find it.\""),
        ("They looked everywhere. At last, {friend} found the {thing} {hiding}.",
         "They looked high and low. {Then}, {hero} saw something {thing_adj} {hiding}. It was the {thing}!",
         "They searched and searched. Finally, they found the {thing} {hiding}."),
        ("{hero} was so {good}. \"Thank you, {friend}!\" {he} said.",
         "{hero} hugged {his} {thing} and felt {good}. {He} thanked {friend} again and again."),
    ),
    "out_of_reach": (
        ("{time}, {hero} saw a {thing_adj} {thing} {high}.",
         "{time}, {hero} was at {place} when {he} saw a {thing_adj} {thing} {high}."),
        ("{He} wanted it very much. {He} jumped and jumped, but {he} could not reach it.",
         "{He} tried to reach it. {He} stood on {his} toes, but {he} was too small.",
         "{He} stretched {his} arms as far as {he} could, but the {thing} was too high."),
        ("{hero} felt {bad}. {He} did not know what to do.",
         "\"I will never get it,\" said {hero} in a {bad} voice."),
        ("{Then} {his} {grownup} came. \"I can help you,\" said {his} {grownup}, and got the {thing} down.",
         "{friend_called} saw {him} and had an idea. \"Climb on my back!\" said {friend}.",
         "{hero} asked {friend} for help. {friend} found a box, and {hero} stood on it to reach the {thing}."),
        ("At last {hero} had the {thing}. {He} was so {good} that {he} shared it with {friend}.",
         "{hero} held the {thing} and smiled. \"We did it!\" {he} said to {friend}."),
    ),
    "sharing": (
        ("{time}, {hero} had a big {treat}. {He} was about to eat it.",
         "{hero}'s {grownup} gave {him} a yummy {treat} to take to {place}."),
        ("{Then} {he} saw {friend}, a {friend_adj} {friend_kind}. {friend} looked hungry and {bad}.",
         "At {place}, {hero} met {friend_called}. {friend} had nothing to eat."),
        ("{hero} thought for a moment. {He} wanted the whole {treat} for {himself}.",
         "{hero} did not want to share at first. The {treat} looked so good."),
        ("But then {he} said, \"Would you like some of my {treat}?\"",
         "Then {he} broke the {treat} in two and gave half to {friend}.",
         "\"Here, you can have half,\" said {hero} with a smile."),
        ("{friend} was so {good}. \"Thank you, {hero}! You are very kind,\" said {friend}.",
         "{friend} smiled a big smile. They ate the {treat} together, and it tasted even better."),
    ),
    "scared": (
        ("{time}, {hero} was at {place} with {his} {grownup}.",
         "{hero} was playing at {place} when it started to get dark."),
        ("Suddenly, {he} heard {fear}. {He} felt very {bad} and hid behind {his} {grownup}.",
         "Then {hero} saw {fear}. {He} was so scared that {he} wanted to run home.",
         "All of a sudden there was {fear}. {hero} shook and did not move."),
        ("\"Don't be scared,\" said {his} {grownup}. \"Let's go and look together.\"",
         "{His} {grownup} held {his} hand. \"Be brave, {hero},\" {grownup_pronoun} said softly."),
        ("They went to look, and {hero} saw that {fear_answer}.",
         "{hero} took a deep breath and looked. {He} saw that {fear_answer}."),
        ("{hero} laughed. \"I was scared for nothing!\" {he} said.",
         "{hero} was not scared anymore. {He} felt brave and {good}."),
    ),
    "broken": (
        ("{hero} loved {his} {grownup}'s {thing_adj} {thing}. {He} was not supposed to play with it.",
         "{time}, {hero} found a {thing_adj} {thing} on the table. It belonged to {his} {grownup}."),
        ("{He} picked it up to look at it closely, but it slipped and broke!",
         "{He} played with it, and then, crack! The {thing} broke into pieces."),
        ("{hero} felt very {bad}. {He} wanted to hide the pieces.",
         "{hero} was scared. \"Maybe nobody will know,\" {he} thought."),
        ("But {he} knew that was not right. {He} went to {his} {grownup} and said, \"I am sorry. I broke your {thing}.\"",
         "Then {he} remembered that it is good to tell the truth. {He} told {his} {grownup} what happened."),
        ("{His} {grownup} gave {him} a hug. \"Thank you for telling me the truth,\" {grownup_pronoun} said. \"We can fix it together.\"",
         "{His} {grownup} was not angry. \"Things can break, but I am proud that you told me,\" {grownup_pronoun} said."),
        ("They fixed the {thing} with glue, and {hero} felt {good} again.",
         "Together they made the {thing} as good as new."),
    ),
    "new_friend": (
        ("{time}, {hero} went to {place}. {He} did not know anyone there.",
         "{hero} was new in town. {He} felt a little {bad} and alone."),
        ("{He} saw a {friend_adj} {friend_kind} named {friend}. {friend} was {friend_activity_ing}.",
         "Near the trees, {he} saw {friend_called}, who was {friend_activity_ing} all alone."),
        ("{hero} was shy, but {he} walked over and said, \"Hello! My name is {hero}. Can I play too?\"",
         "{hero} wanted to say hello, but {he} was shy. At last {he} said, \"Hi! Do you want to play?\""),
        ("{friend} smiled. \"Yes! I like {friend_activity_ing} with a friend,\" {fhe} said.",
         "\"Of course!\" said {friend}. \"It is more fun with two.\""),
        ("They played all day. They laughed and ran and had so much fun.",
         "They took turns {activity_ing} and told funny stories."),
    ),
    "rainy_day": (
        ("{time}, {hero} wanted to go to {place} to {activity}.",
         "{hero} and {friend} had a plan. They wanted to {activity} at {place}."),
        ("But then it started to rain. Big drops fell from the sky.",
         "But dark clouds came, and soon it was raining hard."),
        ("{hero} looked out of the window. {He} felt {bad}. \"Now we can't play,\" {he} said.",
         "\"Oh no,\" said {hero}. \"The rain ruined everything.\""),
        ("{His} {grownup} said, \"You can play inside. Why don't you build a fort with blankets?\"",
         "{friend} had an idea. \"Let's make a tent out of pillows and pretend we are in the forest!\""),
        ("They built a big fort and played inside it all afternoon.",
         "They made a cozy fort, ate a {treat}, and told stories."),
        ("When the rain stopped, a big rainbow was in the sky. \"Look!\" said {hero}. \"It is so pretty!\"",
         "Later the sun came out, and they saw a rainbow over {place}."),
    ),
    "race": (
        ("{time}, {hero} and {friend} had a race at {place}.",
         "\"Let's have a race!\" said {friend} to {hero}. \"The first to reach the big tree wins!\""),
        ("They ran as fast as they could. {hero} was in front.",
         "Ready, set, go! They ran very fast, and {friend} was ahead."),
        ("Then {friend} tripped on a rock and fell down. \"Ouch!\" {fhe} cried.",
         "But {friend} fell and hurt {fhis} knee. {fHe} started to cry."),
        ("{hero} stopped running. {He} went back to help {friend}.",
         "{hero} could win the race, but {he} turned around to help {friend} up."),
        ("\"Are you okay?\" asked {hero}. \"Let's finish together.\" They walked to the tree side by side.",
         "{hero} held {friend}'s hand, and they reached the tree together."),
        ("{friend} smiled. \"You are a true friend,\" {fhe} said.",
         "Nobody won the race, but they were both {good}."),
    ),
    "helping": (
        ("{time}, {hero} was walking in {place} when {he} heard a small cry.",
         "While {hero} was {activity_ing} at {place}, {he} saw something small moving in the grass."),
        ("It was a baby {animal}. It was lost and could not find its mom.",
         "A tiny {animal} was sitting all alone. It looked very {bad}."),
        ("\"Don't worry,\" said {hero}. \"I will help you find your mom.\"",
         "{hero} knelt down and said softly, \"Hello, little one. Are you lost?\""),
        ("{hero} carried the baby {animal} and looked {hiding}, and then by the river.",
         "They walked and walked. {hero} called out, \"Mama {animal}! Where are you?\""),
        ("At last, they found the mama {animal}. She was so {good} to see her baby.",
         "Soon they heard a big {animal} calling. It was the mama! The baby ran to her."),
        ("The mama {animal} said, \"Thank you, kind {hero_kind}.\" {hero} felt warm inside.",
         "{hero} waved goodbye. {He} felt very {good} because {he} had helped."),
    ),
    "surprise": (
        ("{time}, {hero} found a little door {hiding}.",
         "{time}, {hero} found an old box {hiding}. It had a {color} ribbon on top."),
        ("{He} was very curious. \"What is inside?\" {he} wondered.",
         "{hero} wanted to open it, but {he} was a little {bad}."),
        ("{He} called {friend}. \"Look what I found!\" {he} said.",
         "{He} ran to get {friend_called}. \"Come and see!\""),
        ("Together they opened it slowly. Inside was a {thing_adj} {thing}!",
         "They opened it, and inside they found a {thing_adj} {thing} and a note that said, \"For a good friend.\""),
        ("{hero} and {friend} were so surprised. They took turns playing with the {thing}.",
         "\"Wow!\" said {friend}. \"This is the best surprise ever!\""),
    ),
    "baking": (
        ("{time}, {hero} wanted to make a cake for {his} {grownup}.",
         "It was {his} {grownup}'s birthday. {hero} wanted to bake a special cake."),
        ("{He} got flour, eggs, and milk. {friend} came to help.",
         "{hero} and {friend} put on big aprons and got everything ready."),
        ("They mixed and stirred, but the flour went everywhere! The kitchen was a big mess.",
         "Oops! The bowl fell, and there was flour on the floor, on the table, and on {friend}'s nose."),
        ("{hero} and {friend} laughed. Then they cleaned everything up.",
         "They felt {bad} about the mess, so they cleaned it all up before anyone saw."),
        ("When the cake was ready, {his} {grownup} came in. \"What a wonderful cake!\" {grownup_pronoun} said.",
         "{His} {grownup} tasted the cake and smiled. \"This is the best cake I ever had!\""),
    ),
    "garden": (
        ("{time}, {his} {grownup} gave {hero} a little bag of seeds.",
         "{hero} wanted to grow {his} own flowers, so {he} got some seeds from {his} {grownup}."),
        ("{He} dug small holes in the dirt and put one seed in each hole.",
         "{hero} and {friend_called} planted the seeds in a sunny corner of {place}."),
        ("Every day, {he} gave the seeds some water. But nothing happened.",
         "{He} watered them and waited. One day passed, then two, then three. Still nothing grew."),
        ("\"Why are they not growing?\" asked {hero}. {He} felt {bad}.",
         "{hero} was {bad}. \"Maybe my seeds are broken,\" {he} said."),
        ("\"Seeds need time,\" said {his} {grownup}. \"Be patient and keep taking care of them.\"",
         "{friend} said, \"My grandpa says good things take time. Let's keep watering them.\""),
        ("A week later, {hero} saw tiny green sprouts. Soon there were {color} flowers everywhere!",
         "One morning, little green leaves came up. Then the flowers opened, {color} and beautiful."),
        ("{hero} picked one flower and gave it to {his} {grownup}. {He} felt very {good}.",
         "{hero} smiled at {his} garden. \"We did it!\" {he} said to {friend}."),
    ),
    "party": (
        ("It was {friend}'s birthday, and {hero} was invited to the party at {place}.",
         "{time}, {hero} got a card in the mail. It said, \"Come to my birthday party! Love, {friend}.\""),
        ("{hero} wanted to bring a present, but {he} had no money.",
         "{hero} looked for a gift, but the shop was closed. {He} felt {bad}."),
        ("Then {he} had an idea. {He} made a card with {color} paper and drew a big {animal} on it.",
         "So {he} decided to make a present. {He} wrapped {his} own {thing_adj} {thing} in {color} paper."),
        ("At the party, there were balloons, games, and a big cake with candles.",
         "The party was full of music and laughter. Everyone sang \"Happy Birthday\" to {friend}."),
        ("{hero} gave {his} present to {friend}. {friend} opened it and smiled. \"I love it!\" {fhe} said.",
         "When {friend} saw the gift, {fhe} hugged {hero}. \"This is the best present, because you made it!\""),
    ),
    "bedtime": (
        ("It was time for bed, but {hero} could not sleep.",
         "That night, {hero} lay in bed with {his} {thing_adj} {thing}, but {his} eyes stayed open."),
        ("{He} tossed and turned. The room was dark and quiet, and {he} felt {bad}.",
         "{He} counted sheep, but after one hundred sheep {he} was still awake."),
        ("{He} called, \"{Grownup}, I can't sleep!\" {His} {grownup} came and sat on the bed.",
         "{His} {grownup} heard {him} and came in with a glass of warm milk."),
        ("\"Let me tell you a story,\" said {his} {grownup}. It was a story about a {hero_adj} {animal} who lived on the moon.",
         "{His} {grownup} sang a soft song about the stars and the sea."),
        ("Slowly, {hero}'s eyes grew heavy. Soon {he} was fast asleep, dreaming of {activity_ing}.",
         "Before the song was over, {hero} was asleep with a smile on {his} face."),
    ),
    "trip": (
        ("{time}, {hero} and {his} {grownup} went on a trip to {place}.",
         "{hero} was very {good}. Today {he} was going to visit {place} for the first time."),
        ("They packed a {treat}, a map, and {his} {thing_adj} {thing}.",
         "{He} put on {his} {color} boots and took {his} {thing} with {him}."),
        ("On the way, they saw a {animal}, a big tree, and a long {color} train.",
         "They walked for a long time. {hero} saw a {animal} sleeping in the sun."),
        ("But then they got lost. Every path looked the same.",
         "Suddenly {hero} could not see the road anymore. \"Where are we?\" {he} asked."),
        ("{hero} looked at the map and found the way. \"This way!\" {he} said.",
         "A kind {animal} showed them the way back. \"Follow the river,\" it said."),
        ("At last, they arrived. {hero} had never seen anything so beautiful.",
         "When they got home, {hero} told everyone about the trip. It was an adventure!"),
    ),
    "clean_up": (
        ("{time}, {hero} and {friend_called} went to {place}. There was trash everywhere.",
         "When {hero} got to {place}, {he} saw paper, cans, and bottles on the ground."),
        ("\"This is not nice,\" said {hero}. Animals could get hurt.",
         "{hero} felt {bad}. {He} knew that trash can hurt birds and fish."),
        ("\"Let's clean it up!\" said {friend}. They got a big bag and started to pick up the trash.",
         "{hero} had an idea. {He} asked {his} friends to help, and they all brought bags."),
        ("It was hard work, and it took all afternoon.",
         "They worked and worked until their arms were tired."),
        ("When they were done, {place} looked clean and bright again. The birds came back to sing.",
         "At the end of the day, there was not one piece of trash left. Everyone cheered."),
    ),
    "pet": (
        ("{hero} had a pet {animal} named {pet}. {hero} loved {pet} very much.",
         "{time}, {hero}'s {grownup} brought home a little {animal}. {hero} named it {pet}."),
        ("One morning, {pet} did not want to eat or play. {pet} just lay in a corner.",
         "{time}, {pet} looked tired and sick. {hero} was {bad}."),
        ("{hero} and {his} {grownup} took {pet} to the animal doctor.",
         "\"We must help {pet},\" said {hero}. They went to see the doctor right away."),
        ("The doctor looked at {pet} and said, \"{pet} ate something bad. Give {pet} this medicine and lots of rest.\"",
         "The doctor was very kind. \"{pet} will be fine,\" said the doctor. \"Just keep {pet} warm.\""),
        ("{hero} took care of {pet} every day. {He} gave {pet} water and a soft blanket.",
         "For three days, {hero} sat with {pet} and read {pet} stories."),
        ("Soon {pet} was running and jumping again. {hero} was so {good}.",
         "On the fourth day, {pet} jumped up and licked {hero}'s face. {pet} was better!"),
    ),
    "try_again": (
        ("{hero} wanted to learn to {activity}. {He} watched {friend} do it every day.",
         "{time}, {hero} decided to learn to {activity}."),
        ("The first time {he} tried, {he} fell down. The second time, {he} fell again.",
         "It was very hard. {He} tried and tried, but it did not work."),
        ("{hero} felt {bad}. \"I can't do it,\" {he} said.",
         "{hero} wanted to give up. {He} sat on the ground and frowned."),
        ("{friend} said, \"Don't give up! I fell many times too. Try one more time.\"",
         "{His} {grownup} said, \"Everyone has to practice. Keep trying, and you will get it.\""),
        ("So {hero} tried again, and again. And then, {he} did it!",
         "{hero} took a deep breath and tried once more. This time it worked!"),
        ("\"I did it!\" shouted {hero}. {He} was so {good}.",
         "{hero} jumped up and down. {He} felt very {good}."),
    ),
}
_PLOT_NAMES = tuple(_PLOTS)
assert set(_PLOT_MORALS) == set(_PLOTS)


def _pronouns(subject: str) -> dict[str, str]:
    him, his, himself = ("him", "his", "himself") if subject == "he" else ("her", "her", "herself")
    return {"he": subject, "him": him, "his": his, "himself": himself}


def _character(rng: random.Random, avoid: set[str]) -> dict[str, str]:
    subject = rng.choice(("he", "she"))
    names = _BOY_NAMES if subject == "he" else _GIRL_NAMES
    name = rng.choice([n for n in names if n not in avoid])
    kind = rng.choice(_ANIMAL_KINDS) if rng.random() < 0.4 else _PEOPLE_KINDS[subject]
    return {"name": name, "kind": kind, "adjective": rng.choice(_HERO_ADJECTIVES), **_pronouns(subject)}


def _opening(rng: random.Random) -> str:
    sentences = [rng.choice(_OPENINGS)]
    if rng.random() < 0.6:
        sentences.append(rng.choice(_HABITS))
    if rng.random() < 0.5:
        sentences.append(rng.choice(_WEATHER))
    return " ".join(sentences)


def _story_slots(rng: random.Random) -> dict[str, str]:
    hero = _character(rng, set())
    friend = _character(rng, {hero["name"]})
    grownup = rng.choice(_GROWNUPS)
    grownup_pronoun = "she" if grownup in ("mom", "grandma", "big sister", "aunt") else (
        "he" if grownup in ("dad", "grandpa", "big brother", "uncle") else rng.choice(("he", "she")))
    activity, activity_ing = rng.choice(_ACTIVITIES)
    _, friend_activity_ing = rng.choice(_ACTIVITIES)
    fear, fear_answer = rng.choice(_FEARS)
    slots = {
        "hero": hero["name"], "hero_kind": hero["kind"], "hero_adj": hero["adjective"],
        "he": hero["he"], "him": hero["him"], "his": hero["his"], "himself": hero["himself"],
        "friend": friend["name"], "friend_kind": friend["kind"], "friend_adj": friend["adjective"],
        # "Pip the frog", but "her friend Tom" rather than "Tom the boy".
        "friend_called": (f"{hero['his']} friend {friend['name']}" if friend["kind"] in ("boy", "girl")
                          else f"{friend['name']} the {friend['kind']}"),
        "animal": rng.choice(_ANIMAL_KINDS), "color": rng.choice(_COLORS),
        "pet": rng.choice(_PET_NAMES), "Grownup": grownup.capitalize(),
        "fhe": friend["he"], "fhim": friend["him"], "fhis": friend["his"],
        "grownup": grownup, "grownup_pronoun": grownup_pronoun,
        "place": rng.choice(_PLACES), "thing": rng.choice(_THINGS), "thing_adj": rng.choice(_THING_ADJECTIVES),
        "treat": rng.choice(_TREATS), "activity": activity, "activity_ing": activity_ing,
        "friend_activity_ing": friend_activity_ing,
        "good": rng.choice(_GOOD_FEELINGS), "bad": rng.choice(_BAD_FEELINGS),
        "hiding": rng.choice(_HIDING_SPOTS), "high": rng.choice(_HIGH_SPOTS),
        "fear": fear, "fear_answer": fear_answer, "time": rng.choice(_TIMES), "Then": rng.choice(_THENS),
    }
    slots["He"], slots["His"] = slots["he"].capitalize(), slots["his"].capitalize()
    slots["fHe"], slots["fHis"] = slots["fhe"].capitalize(), slots["fhis"].capitalize()
    return slots


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!uni|use|one)")


def _fill(template: str, slots: dict[str, str]) -> str:
    text = _A_BEFORE_VOWEL.sub(r"\1n ", template.format_map(slots))  # "an orange kite", "an owl"
    return text[0].upper() + text[1:]


def generate_story(rng: random.Random) -> str:
    """One story: an opening, a plot (beats of alternative sentences), and an ending or a moral."""
    slots = _story_slots(rng)
    paragraphs = [_fill(_opening(rng), slots)]
    plot = rng.choice(_PLOT_NAMES)
    beats = _PLOTS[plot]
    sentences: list[str] = []
    for beat in beats:
        sentences.append(_fill(rng.choice(beat), slots))
        slots["Then"] = rng.choice(_THENS)
        # Paragraph breaks at varied points, as in TinyStories.
        if len(sentences) >= 2 and rng.random() < 0.35:
            paragraphs.append(" ".join(sentences))
            sentences = []
    closing = []
    if rng.random() < 0.7:
        closing.append(_fill(rng.choice(_ENDINGS), slots))
    if rng.random() < 0.5:
        closing.append(_fill(rng.choice(_PLOT_MORALS[plot] + _GENERIC_MORALS[:1]), slots))
    sentences.extend(closing)
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n".join(paragraphs)


def generate_stories(out_path: PathLike, *, target_bytes: int, seed: int = 0,
                     progress: ProgressFn | None = None) -> dict:
    """Write generated stories to `out_path` until it holds at least `target_bytes` bytes.

    The same seed gives a byte-identical file. Streamed (constant memory) and atomic.
    """
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    rng = random.Random(seed)
    written = documents = 0
    preview = ""
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        while written < target_bytes:
            story = generate_story(rng)
            preview = preview or story
            record = _document_record(story).encode("utf-8")
            f.write(record)
            written += len(record)
            documents += 1
            if progress and documents % 2000 == 0:
                progress("generate stories", min(written, target_bytes), target_bytes)
    if progress:
        progress("generate stories", target_bytes, target_bytes)
    return {"path": str(out_path), "bytes": written, "documents": documents, "preview": _preview(preview)}


# ---------------------------------------------------------------------------------------------
# Prose from the standard library
# ---------------------------------------------------------------------------------------------

# Directories of the stdlib tree that are not the standard library's own prose.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "__phello__"}
_DOCSTRING_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_MIN_WORDS = 8


def _stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
        sources.extend(Path(dirpath, name) for name in sorted(filenames) if name.endswith(".py"))
    return sources


def _docstrings(source_path: Path) -> Iterator[str]:
    """Docstrings of a source file in source order, read with `ast` (nothing is imported or run)."""
    try:
        tree = ast.parse(source_path.read_bytes(), filename=str(source_path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return  # e.g. test data written in Python 2 syntax
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOCSTRING_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
            # Only definitions can hold docstrings; skip expression subtrees for speed.
            stack.extend(reversed([child for child in node.body if isinstance(child, (*_DOCSTRING_NODES, ast.If, ast.Try))]))
        elif isinstance(node, (ast.If, ast.Try)):
            children = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                children.extend(handler.body)
            stack.extend(reversed([c for c in children if isinstance(c, (*_DOCSTRING_NODES, ast.If, ast.Try))]))


def _normalise_prose(text: str, separator: str = ENDOFTEXT) -> str:
    text = text.replace(separator, "").replace("\r\n", "\n").replace("\t", "    ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _stdlib_documents(sources: list[Path], progress: ProgressFn | None) -> Iterator[str]:
    steps = len(sources) + 1  # every source file, then the pydoc topics
    for done, source in enumerate(sources, start=1):
        yield from _docstrings(source)
        if progress and done % 20 == 0:
            progress("stdlib prose", done, steps)
    from pydoc_data.topics import topics  # a plain dict literal; importing it has no side effects

    for name in sorted(topics):
        yield topics[name]


def stdlib_prose(out_path: PathLike, *, max_bytes: int | None = None, progress: ProgressFn | None = None) -> dict:
    """Write the running Python's stdlib docstrings and pydoc topics as one document each.

    Tiny (fewer than 8 words) and duplicate documents are dropped; the order is deterministic for a
    given Python installation. Stops before the document that would exceed `max_bytes`. Progress
    counts source files read.
    """
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
    sources = _stdlib_sources()
    seen: set[bytes] = set()
    written = documents = 0
    preview = ""
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        for raw in _stdlib_documents(sources, progress):
            document = _normalise_prose(raw)
            if len(document.split()) < _MIN_WORDS:
                continue
            digest = hashlib.blake2b(document.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
            record = _document_record(document).encode("utf-8")
            if max_bytes is not None and written + len(record) > max_bytes:
                break
            f.write(record)
            written += len(record)
            documents += 1
            preview = preview or document
    if progress:
        progress("stdlib prose", len(sources) + 1, len(sources) + 1)
    return {"path": str(out_path), "bytes": written, "documents": documents, "preview": _preview(preview),
            "python": sys.version.split()[0], "source_files": len(sources)}


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------

class DownloadError(RuntimeError):
    """A download failed for a reason retrying will not fix (HTTP error status, bad checksum, ...)."""


_RETRYABLE = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, HTTPException, OSError)
# Generous: the handout's largest file (owt_train.txt.gz) over a slow link fits easily; a server
# that drips a byte a second does not hold the pipeline forever.
DEFAULT_DEADLINE_S = 12 * 3600.0
# Far above OWT's 11.9 GB; a gzip bomb stops here instead of filling the disk.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 << 30
# An error page is not a corpus, whatever status it came with.
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class _Served:
    """What the server stated about the file during one attempt, redirects included.

    A Hugging Face resolve URL answers an LFS file with `X-Linked-Etag` (the sha256 of the file)
    and `X-Linked-Size` before redirecting to the CDN; `huggingface_hub` verifies downloads with
    them, and so do we, even when the caller gives no checksum.
    """

    def __init__(self) -> None:
        self.total: int | None = None  # from Content-Length or Content-Range
        self.linked_sha256: str | None = None
        self.linked_size: int | None = None

    def note_linked(self, headers) -> None:
        etag = (headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"').lower()
        if _SHA256_HEX.fullmatch(etag):  # a git sha1 (non-LFS file) says nothing about our bytes
            self.linked_sha256 = etag
        size = (headers.get("X-Linked-Size") or "").strip()
        if size.isdigit():
            self.linked_size = int(size)


class _NoteLinkedHeaders(urllib.request.HTTPRedirectHandler):
    """Redirects as usual, but first keeps the X-Linked-* headers of the response that redirects."""

    def __init__(self, served: _Served) -> None:
        self.served = served

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.served.note_linked(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _record_path(dest: Path) -> Path:
    """Where download() records what it verified about `dest` (hidden: not part of a product)."""
    return dest.with_name(f".{dest.name}.download.json")


def _content_range_total(header: str | None) -> int | None:
    """The total size from a Content-Range header ("bytes 10-99/100" or "bytes */100")."""
    match = re.fullmatch(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", (header or "").strip())
    return int(match.group(1)) if match else None


def _open_url(url: str, offset: int, served: _Served, timeout: float):
    """The response to a GET of `url` from `offset`, or None when the partial is already complete.

    Raises a retryable error for 429/5xx and DownloadError for other HTTP error statuses.
    """
    headers = {"User-Agent": "cs336-pipeline", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener(_NoteLinkedHeaders(served))
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        served.note_linked(error.headers)
        error.close()
        if error.code == 416 and offset:
            # Nothing left to send from `offset`: either the partial is already complete, or it is
            # longer than the remote file (the file changed); the caller's size check decides.
            served.total = _content_range_total(error.headers.get("Content-Range"))
            return None
        if error.code == 429 or error.code >= 500:  # the server is busy or broken right now: retry
            raise ConnectionError(f"HTTP {error.code} {error.reason} for {url}") from None
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}") from None
    served.note_linked(response.headers)
    return response


def _fetch_into_partial(url: str, partial: Path, *, chunk_size: int, timeout: float, deadline_at: float,
                        allow_html: bool, progress: ProgressFn | None) -> _Served:
    """One attempt: append the rest of `url` to `partial`, resuming with a Range request.

    Returns what the server stated about the file. Raises a retryable error if the connection
    breaks or the body ends before its announced length or chunked framing says, and
    DownloadError for HTTP error statuses, an HTML body or a passed deadline.
    """
    offset = partial.stat().st_size if partial.exists() else 0
    served = _Served()
    response = _open_url(url, offset, served, min(timeout, max(deadline_at - time.monotonic(), 0.1)))
    if response is None:
        if served.total is not None and served.total != offset:
            partial.unlink()
            raise ConnectionError(f"partial download of {url} is {offset} bytes but the file has {served.total}; "
                                  "restarting")
        served.total = offset if served.total is None else served.total
        return served
    with response:
        content_type = response.headers.get_content_type()
        if content_type in _HTML_TYPES and not allow_html:
            raise DownloadError(f"{url} answered with an HTML page (Content-Type {content_type}), not the file; "
                                f"nothing was kept from it")
        if response.status == 206:
            start_match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
            if not start_match or int(start_match.group(1)) != offset:
                raise DownloadError(f"{url} answered Range {offset}- with Content-Range "
                                    f"{response.headers.get('Content-Range')!r}")
            served.total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            # 200: a server that ignores Range sends the whole file again, so start over.
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            served.total = int(length) if length is not None else None
        done = offset
        with open(partial, mode) as f:
            # read1, not read: read(n) waits for all n bytes, so a dripping server would never
            # let the deadline be checked.
            while chunk := response.read1(chunk_size):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress("download", done, served.total or 0)
                if time.monotonic() > deadline_at:
                    raise DownloadError(f"download of {url} passed its deadline after {done} bytes; "
                                        f"{partial} is kept and the next call resumes it")
            f.flush()
            os.fsync(f.fileno())
    if served.total is not None and done < served.total:
        raise ConnectionError(f"connection closed after {done} of {served.total} bytes of {url}")
    return served


def _fetch_with_retries(url: str, partial: Path, *, retries: int, deadline: float, **fetch_options) -> _Served:
    deadline_at = time.monotonic() + deadline
    retries = max(retries, 0)
    for attempt in range(retries + 1):
        try:
            return _fetch_into_partial(url, partial, deadline_at=deadline_at, **fetch_options)
        except DownloadError:
            raise
        except _RETRYABLE as error:
            pause = min(2.0 ** attempt, 30.0) * 0.5
            if attempt == retries or time.monotonic() + pause > deadline_at:
                why = (f"failed after {attempt + 1} attempts" if attempt == retries
                       else f"passed its deadline of {deadline:g} s")
                raise DownloadError(f"download of {url} {why} ({error}); "
                                    f"{partial} is kept and the next call resumes it") from error
            time.sleep(pause)
    raise AssertionError("unreachable")


def _sha256_of(path: Path, chunk_size: int = _READ_CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _verify_served(url: str, partial: Path, served: _Served, sha256: str | None,
                   expected_size: int | None) -> tuple[int, str]:
    """Check the bytes as served against every size and checksum anyone stated; returns both."""
    size = partial.stat().st_size
    actual = _sha256_of(partial)
    for name, expected, got in (
        ("size", expected_size, size),
        ("size announced by the server", served.total, size),
        ("size stated by the server (X-Linked-Size)", served.linked_size, size),
        ("sha256", sha256 and sha256.lower(), actual),
        ("sha256 stated by the server (X-Linked-Etag)", served.linked_sha256, actual),
    ):
        if expected is not None and expected != got:
            partial.unlink()
            raise DownloadError(f"{name} mismatch for {url}: expected {expected}, got {got}; "
                                f"the partial download was deleted")
    return size, actual


def _gunzip(url: str, partial: Path, dest: Path | None, *, chunk_size: int, max_bytes: int | None,
            progress: ProgressFn | None) -> tuple[int, str]:
    """Decompress `partial` into `dest` atomically (or only check it, when `dest` is None).

    The gzip trailer (CRC and length) is what reveals a body cut short when the server announced
    no length. Returns the size and sha256 of the decompressed bytes.
    """
    digest, written = hashlib.sha256(), 0
    packed = partial.stat().st_size
    try:
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(gzip.open(partial, "rb"))
            out = stack.enter_context(open(stack.enter_context(atomic_path(dest)), "wb")) if dest else None
            while chunk := src.read(chunk_size):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise DownloadError(f"{url} decompresses to more than max_decompressed_bytes={max_bytes}; "
                                        f"the download was deleted")
                digest.update(chunk)
                if out:
                    out.write(chunk)
                if progress:
                    progress("decompress", src.fileobj.tell(), packed)  # type: ignore[union-attr]
    except DownloadError:
        partial.unlink()
        raise
    except EOFError as error:
        partial.unlink()
        raise DownloadError(f"{url} ends before its gzip trailer: the body was cut short ({error}); "
                            f"the download was deleted") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        partial.unlink()
        raise DownloadError(f"{url} is not valid gzip data ({error}); the download was deleted") from error
    return written, digest.hexdigest()


def _cached_copy_is_intact(url: str, dest: Path, sha256: str | None, expected_size: int | None) -> str | None:
    """Why the existing `dest` cannot be reused (None when it can): it must carry a record of this
    download, and still have the size and sha256 recorded (a truncated or edited file does not)."""
    try:
        record = json.loads(_record_path(dest).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        record = None
    if not isinstance(record, dict):
        return "it has no download record, so it was never verified complete"
    if record.get("url") != url:
        return f"it was downloaded from {record.get('url')!r}"
    if sha256 is not None and record.get("served_sha256") != sha256.lower():
        return f"it was verified against sha256 {record.get('served_sha256')}, not {sha256.lower()}"
    if expected_size is not None and record.get("served_size") != expected_size:
        return f"it was {record.get('served_size')} bytes as served, not {expected_size}"
    size = dest.stat().st_size
    if size != record.get("size"):
        return f"it is {size} bytes but was {record.get('size')} when downloaded"
    if _sha256_of(dest) != record.get("sha256"):
        return "its sha256 changed since it was downloaded"
    return None


def download(url: str, dest: PathLike, *, sha256: str | None = None, expected_size: int | None = None,
             decompress_gzip: bool | None = None, chunk_size: int = 1 << 20, timeout: float = 60,
             deadline: float = DEFAULT_DEADLINE_S, retries: int = 3, overwrite: bool = False,
             allow_html: bool = False, max_decompressed_bytes: int | None = DEFAULT_MAX_DECOMPRESSED_BYTES,
             progress: ProgressFn | None = None) -> Path:
    """Download `url` to `dest`: streamed, resumable, verified, and never half-written.

    Bytes arrive in `dest.partial`, which survives failures so the next attempt (a retry here, or a
    later call) resumes it with `Range: bytes=N-`. The bytes as served (the compressed file for a
    .gz) are checked against `sha256` and `expected_size`, against the length the server announced
    and against the `X-Linked-Etag`/`X-Linked-Size` a Hugging Face resolve URL states; on a
    mismatch the partial is deleted and a DownloadError names expected and actual values. A body
    cut short (Content-Length, chunked framing, gzip trailer) is never taken as complete. An HTML
    body is refused unless `allow_html`. `timeout` bounds each read, `deadline` the whole call.

    A gzip file (decided by `decompress_gzip`, or when None by the gzip magic bytes, unless `dest`
    itself ends in .gz) is decompressed into `dest` atomically, at most `max_decompressed_bytes`.
    An existing `dest` is reused unless `overwrite`, but only after checking it against the size
    and sha256 recorded when it was downloaded; otherwise it is downloaded again.
    """
    if sha256 is not None and not _SHA256_HEX.fullmatch(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")  # it could never match
    dest = prepare_destination(dest)
    partial = _partial_path(dest)
    remove_stale_partials(dest.parent)
    if dest.exists() and not overwrite:
        why_not = _cached_copy_is_intact(url, dest, sha256, expected_size)
        if why_not is None:
            partial.unlink(missing_ok=True)  # an abandoned re-download of a file that is complete
            return dest
        warnings.warn(f"downloading {url} again: the existing {dest} cannot be reused ({why_not})", stacklevel=2)
    served = _fetch_with_retries(url, partial, retries=retries, deadline=deadline, chunk_size=chunk_size,
                                 timeout=timeout, allow_html=allow_html, progress=progress)
    served_size, served_sha256 = _verify_served(url, partial, served, sha256, expected_size)

    is_gzip = _is_gzip(partial)
    if decompress_gzip is None:
        decompress_gzip = is_gzip and not dest.name.endswith(".gz")
    if decompress_gzip and not is_gzip:
        raise DownloadError(f"decompress_gzip=True but {url} is not gzip data (no 1f 8b magic bytes)")
    gunzip_options = {"chunk_size": chunk_size, "max_bytes": max_decompressed_bytes, "progress": progress}
    if decompress_gzip:
        size, digest = _gunzip(url, partial, dest, **gunzip_options)
        partial.unlink()
    else:
        if is_gzip:  # kept packed, but a stream cut short must still not be cached as complete
            _gunzip(url, partial, None, **{**gunzip_options, "max_bytes": None})
        size, digest = served_size, served_sha256
        os.replace(partial, dest)
    atomic_write_json(_record_path(dest), {"url": url, "size": size, "sha256": digest,
                                           "served_size": served_size, "served_sha256": served_sha256})
    return dest


# ---------------------------------------------------------------------------------------------
# Documents: streaming iteration, splitting, sampling, statistics
# ---------------------------------------------------------------------------------------------

def _open_binary(path: PathLike):
    """Open a corpus for reading bytes; .gz files (by magic bytes) are decompressed on the fly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _iter_document_bytes(path: PathLike, separator: str = ENDOFTEXT) -> Iterator[bytes]:
    """Documents as bytes, whitespace around each stripped, empty ones skipped; constant memory."""
    sep = separator.encode("utf-8")
    buffer = bytearray()
    scanned = 0  # buffer[:scanned] holds no separator, so a huge document is not rescanned per chunk
    with _open_binary(path) as f:
        while chunk := f.read(_READ_CHUNK):
            buffer += chunk
            if buffer.find(sep, scanned) == -1:
                scanned = max(0, len(buffer) - len(sep) + 1)
                continue
            *documents, rest = bytes(buffer).split(sep)
            buffer, scanned = bytearray(rest), 0
            for document in documents:
                if document := document.strip():
                    yield document
    if tail := bytes(buffer).strip():
        yield tail


def iter_documents(path: PathLike, separator: str = ENDOFTEXT) -> Iterator[str]:
    """Stream the documents of a corpus (invalid UTF-8 is replaced, never fatal)."""
    for document in _iter_document_bytes(path, separator):
        yield document.decode("utf-8", errors="replace")


def split_documents(src: PathLike, train_out: PathLike, valid_out: PathLike, *, valid_fraction: float,
                    seed: int = 0, separator: str = ENDOFTEXT, progress: ProgressFn | None = None) -> dict:
    """Split `src` by document into train and validation files (deterministic, streamed, atomic).

    Each document goes to validation with probability `valid_fraction`; with two or more documents
    neither split is left empty (the last document fills an empty side).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be strictly between 0 and 1, got {valid_fraction}")
    rng = random.Random(seed)
    sep = separator.encode("utf-8")
    counts = {"train": 0, "valid": 0}
    sizes = {"train": 0, "valid": 0}
    total_bytes = Path(src).stat().st_size if Path(src).is_file() else 0
    with atomic_path(train_out) as train_tmp, atomic_path(valid_out) as valid_tmp, \
            open(train_tmp, "wb") as train_f, open(valid_tmp, "wb") as valid_f:
        outputs = {"train": train_f, "valid": valid_f}

        def emit(split: str, document: bytes) -> None:
            record = document + b"\n" + sep + b"\n"
            outputs[split].write(record)
            counts[split] += 1
            sizes[split] += len(record)

        previous: bytes | None = None
        for document in _iter_document_bytes(src, separator):
            if previous is not None:  # one document of lookahead, so the last one can fill a gap
                emit("valid" if rng.random() < valid_fraction else "train", previous)
                if progress and (counts["train"] + counts["valid"]) % 10000 == 0:
                    progress("split documents", sizes["train"] + sizes["valid"], total_bytes)
            previous = document
        if previous is not None:
            if counts["valid"] == 0 and counts["train"] > 0:
                split = "valid"
            elif counts["train"] == 0 and counts["valid"] > 0:
                split = "train"
            else:
                split = "valid" if rng.random() < valid_fraction else "train"
            emit(split, previous)
        else:  # raised inside the `with`, so neither output is written
            raise ValueError(f"no documents in {src} (separator {separator!r})")
    return {"train_documents": counts["train"], "valid_documents": counts["valid"],
            "train_bytes": sizes["train"], "valid_bytes": sizes["valid"]}


def sample_documents(path: PathLike, n: int = 10, seed: int = 0, separator: str = ENDOFTEXT) -> list[str]:
    """`n` documents drawn uniformly without replacement in one streaming pass (reservoir sampling),
    returned in corpus order."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    for index, document in enumerate(iter_documents(path, separator)):
        if index < n:
            reservoir.append((index, document))
        else:
            slot = rng.randint(0, index)
            if slot < n:
                reservoir[slot] = (index, document)
    return [document for _, document in sorted(reservoir)]


def corpus_stats(path: PathLike, separator: str = ENDOFTEXT) -> dict:
    """Bytes on disk, number of documents and a preview of the first document."""
    documents = 0
    preview = ""
    for document in iter_documents(path, separator):
        preview = preview or document
        documents += 1
    return {"path": str(path), "bytes": Path(path).stat().st_size, "documents": documents,
            "preview": _preview(preview)}


_HTML_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)


def _scan_text(path: PathLike, separator: bytes) -> tuple[int, int, bytes, bool, bool]:
    """One streamed pass: (size, invalid bytes, first 4 KiB, any non-whitespace, separator seen)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    size = invalid = 0
    first, tail = b"", b""
    has_text, has_separator = False, not separator
    with _open_binary(path) as f:
        while chunk := f.read(_READ_CHUNK):
            size += len(chunk)
            first = first if len(first) >= 4096 else first + chunk[:4096]
            has_text = has_text or bool(chunk.strip())
            # Replacement characters the bytes did not spell out themselves are decode errors.
            invalid += decoder.decode(chunk).count("\ufffd") - chunk.count("\ufffd".encode()) + chunk.count(b"\0")
            if not has_separator:  # `tail` catches a separator split between two chunks
                has_separator = separator in tail + chunk
                tail = (tail + chunk)[-(len(separator) - 1):] if len(separator) > 1 else b""
    invalid += decoder.decode(b"", final=True).count("\ufffd")
    return size, invalid, first, has_text, has_separator


def check_plausible_text(path: PathLike, *, separator: str | None = None,
                         max_invalid_fraction: float = 1e-3) -> dict:
    """Raise ValueError naming `path` unless it looks like a text corpus; streamed, constant memory.

    A corpus must hold some non-whitespace text, must not be an HTML page (a server's error page
    saved as the corpus), must decode as UTF-8 (at most `max_invalid_fraction` of its bytes may be
    invalid or NUL: a stray bad byte in a large scraped corpus is tolerated, binary or UTF-16 data
    is not) and, when `separator` is given, must contain it. A .gz file is checked decompressed.
    Returns the decompressed size and the number of invalid bytes.
    """
    try:
        size, invalid, first, has_text, has_separator = _scan_text(path, (separator or "").encode("utf-8"))
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} starts like gzip but is not valid gzip data ({error})") from error
    if not has_text:
        raise ValueError(f"{path} is empty ({size} bytes, no text): not a corpus")
    if _HTML_START.match(first):
        raise ValueError(f"{path} is an HTML page, not a text corpus (it starts {first[:80]!r}); "
                         "a server answered with a web page instead of the file?")
    if invalid > max_invalid_fraction * size:
        raise ValueError(f"{path} is not UTF-8 text: {invalid} of its {size} bytes are invalid UTF-8 or NUL "
                         f"(more than max_invalid_fraction={max_invalid_fraction:g})")
    if not has_separator:
        raise ValueError(f"{path} has no {separator!r} document separator in {size} bytes; "
                         "every document of this corpus should be followed by one")
    return {"bytes": size, "invalid_bytes": invalid}


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _byte_count(text: str) -> float:
    """argparse type: a positive, finite number of bytes such as 50e3 (argparse names the option)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes such as 50e3, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    """`python -m cs336_core.corpora stories|prose|download|split|stats|sample ...`"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cs336_core.corpora", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stories = commands.add_parser("stories", help="generate TinyStories-style stories")
    stories.add_argument("out")
    stories.add_argument("--bytes", type=_byte_count, default=10e6, help="target size in bytes (default 10e6)")
    stories.add_argument("--seed", type=int, default=0)
    prose = commands.add_parser("prose", help="extract this Python's stdlib docstrings and pydoc topics")
    prose.add_argument("out")
    prose.add_argument("--max-bytes", type=_byte_count, default=None)
    fetch = commands.add_parser("download", help="resumable, verified download (e.g. a CORPUS_SOURCES URL)")
    fetch.add_argument("url", help="a URL, or a name such as tinystories/train or owt/valid")
    fetch.add_argument("out")
    fetch.add_argument("--sha256")
    split = commands.add_parser("split", help="split a corpus by document into train and valid files")
    split.add_argument("src")
    split.add_argument("train_out")
    split.add_argument("valid_out")
    split.add_argument("--valid-fraction", type=float, default=0.05)
    split.add_argument("--seed", type=int, default=0)
    stats = commands.add_parser("stats", help="bytes, documents and a preview")
    stats.add_argument("path")
    sample = commands.add_parser("sample", help="print n documents drawn uniformly")
    sample.add_argument("path")
    sample.add_argument("-n", type=int, default=3)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        result = _run_command(args)
    except (OSError, ValueError, EOFError, DownloadError) as error:
        # One line naming the file and the problem; a traceback would bury it.
        parser.exit(1, f"{parser.prog} {args.command}: error: {_one_line(error)}\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return f"{names}: {error.strerror}"
    return " ".join(str(error).split("\n"))


def _corpus_url(name_or_url: str) -> str:
    """A CORPUS_SOURCES name such as owt/valid, or the URL itself."""
    corpus, _, split_name = name_or_url.partition("/")
    if corpus not in CORPUS_SOURCES:
        return name_or_url
    if split_name not in CORPUS_SOURCES[corpus]:
        raise ValueError(f"unknown corpus {name_or_url!r}: expected one of "
                       + ", ".join(f"{c}/{s}" for c, splits in CORPUS_SOURCES.items() for s in splits))
    return CORPUS_SOURCES[corpus][split_name]


def _run_command(args) -> dict:
    from cs336_core.progress import ConsoleProgress

    progress = ConsoleProgress(unit="B")
    try:
        if args.command == "stories":
            return generate_stories(args.out, target_bytes=int(args.bytes), seed=args.seed, progress=progress)
        if args.command == "prose":
            max_bytes = int(args.max_bytes) if args.max_bytes is not None else None
            return stdlib_prose(args.out, max_bytes=max_bytes, progress=ConsoleProgress(unit="file"))
        if args.command == "download":
            return {"path": str(download(_corpus_url(args.url), args.out, sha256=args.sha256, progress=progress))}
        if args.command == "split":
            return split_documents(args.src, args.train_out, args.valid_out, valid_fraction=args.valid_fraction,
                                   seed=args.seed, progress=progress)
        if args.command == "stats":
            return corpus_stats(args.path)
        return {"documents": sample_documents(args.path, n=args.n, seed=args.seed)}
    finally:
        progress.close()

if __name__ == "__main__":
    main()
