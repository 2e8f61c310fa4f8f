"""Word lists and plot templates of the story generator (`stories.py`): pure data.

Templates hold `{slot}` placeholders that `stories._story_slots` fills: the hero (`{hero}`, `{he}`,
`{him}`, `{his}`, `{He}` ...), a friend (`{friend}`, `{fhe}` ...), a grown-up, a place, a thing, a
treat, feelings and so on. Editing any of it changes the stories a seed generates.
"""

GIRL_NAMES = (
    "Lily Mia Sue Anna Emma Lucy Zoe Ella Amy Rose Kate Molly Sara Daisy Ruby Nora Ivy Grace Maya "
    "Chloe Hannah Lola Bella Tina Jane Clara Ava Nina Poppy Luna Alice Olivia Sophie Emily Lisa Julia "
    "Ellie Stella Hazel Violet Penny Rosie Millie Greta Iris Willow Hope Abby Kitty Dora Wendy Fiona "
    "Heidi Tilly Mabel Pearl Lucia Mira Elsa Jenny"
).split()
BOY_NAMES = (
    "Tom Ben Max Sam Jack Leo Tim Jake Finn Timmy Bobby Joe Noah Oscar Henry Billy Ollie Danny "
    "Lucas Toby Eli Jimmy Mark Peter Alex Theo Milo Ryan Luke Adam Charlie Felix Hugo Jonah Kevin "
    "Oliver Simon Teddy Victor Zack Arthur Benny Caleb Dylan Ethan Freddie George Harry Ivan Louis "
    "Marco Nick Otto Paul Rudy Sammy Walter Frank Bruno"
).split()
PEOPLE_KINDS = {"she": "girl", "he": "boy"}
ANIMAL_KINDS = (
    "cat dog puppy kitten bunny bird bear fox mouse frog duck owl squirrel pig cow horse lion "
    "elephant turtle monkey sheep goat deer hedgehog penguin giraffe zebra tiger rabbit hamster "
    "chicken goose donkey pony koala panda raccoon beaver otter seal whale dolphin crab ladybug "
    "butterfly bee snail parrot robin lamb kangaroo"
).split()
HERO_ADJECTIVES = (
    "little happy kind brave curious shy silly small clever friendly gentle playful sleepy busy "
    "cheerful tiny funny quiet lively careful bright helpful honest polite smart strong young "
    "bouncy jolly proud eager patient clumsy chatty sweet wise loud calm lucky speedy fuzzy"
).split()
PLACES = (
    "the park|the forest|the garden|the beach|the farm|the lake|the big hill|the playground|"
    "the market|the library|the zoo|the river|the meadow|the backyard|the school|the toy shop|"
    "the pond|the woods|grandma's house|the bakery|the old barn|the village|the sandbox|the field|"
    "the museum|the pool|the castle|the jungle|the mountain|the island|the harbor|the orchard|"
    "the cave|the bridge|the train station|the swimming pool|the ice rink|the fair|the circus|"
    "the doctor's office|the post office|the big city|the quiet street|the flower shop|the camp"
).split("|")
COLORS = "red blue green yellow pink purple orange white black brown silver gray".split()
THING_ADJECTIVES = tuple(COLORS) + tuple(
    "shiny soft old new big small striped spotted sparkly wooden golden fluffy bright tiny "
    "heavy round magic funny squeaky fancy plastic".split())
THINGS = (
    "ball|kite|teddy bear|toy car|hat|bike|doll|book|balloon|toy boat|drum|scarf|rock|train|"
    "puzzle|jump rope|umbrella|whistle|blanket|bucket|crown|robot|music box|marble|wagon|flute|"
    "truck|necklace|shovel|box of crayons|feather|shell|yo-yo|bell|spoon|cup|sock|key|"
    "backpack|sweater|mitten|pillow|lamp|clock|camera|guitar|piano|tambourine|rocket|airplane|"
    "dinosaur toy|bracelet|ring|watch|map|compass|flashlight|paintbrush|notebook|pencil|basket|"
    "bowl|vase|fishing rod|skateboard|scooter|helmet|sled|snow globe|treasure chest|jar|ribbon|"
    "button|coin|star sticker|toy horse|puppet|wand|mirror"
).split("|")
TREATS = (
    "apple|cookie|piece of cake|sandwich|banana|candy|slice of pie|ice cream|cupcake|muffin|"
    "orange|jar of honey|piece of cheese|bowl of soup|carrot|pear|lollipop|pancake|bun|peach|"
    "plum|bunch of grapes|cherry|strawberry|slice of bread|cracker|donut|pretzel|cup of milk|"
    "waffle|bowl of berries|slice of pizza|chocolate bar|bag of popcorn|lemonade|watermelon|"
    "tomato|cookie with sprinkles|slice of melon|bowl of rice"
).split("|")
# (base form, -ing form)
ACTIVITIES = (
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
GOOD_FEELINGS = "happy glad proud excited thankful joyful calm cheerful delighted thrilled pleased cozy relieved".split()
BAD_FEELINGS = "sad worried scared upset lonely grumpy nervous frightened confused unhappy cross gloomy".split()
GROWNUPS = "mom|dad|grandma|grandpa|big sister|big brother|teacher|aunt|uncle|neighbor".split("|")
WEATHER = (
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
HIDING_SPOTS = (
    "under a big leaf|behind a tree|under the bed|in a bush|next to the fence|under the slide|"
    "behind a rock|in the tall grass|under a bench|inside an old box|near the pond|in a hole|"
    "behind the curtain|under the table|in the sandbox|between two flower pots|inside a boot|"
    "under a pile of leaves|behind the shed|on a tree branch|in the mailbox|under the stairs|"
    "next to the gate|beside the mushrooms|inside the dog house"
).split("|")
HIGH_SPOTS = (
    "on a high shelf|at the top of a tree|on the roof|on a tall wall|on top of the fridge|"
    "on top of the cupboard|in a high window|on the top step of a ladder|up on a lamp post|"
    "on a tall rock"
).split("|")
FEARS = (
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
TIMES = (
    "One day", "One morning", "One sunny afternoon", "One evening", "Early one morning",
    "One rainy day", "Last summer", "One cold winter day", "One spring morning", "On Saturday",
    "One windy day", "After lunch", "One bright day", "On a snowy morning", "Yesterday",
    "One autumn day",
)
PET_NAMES = "Spot Fluffy Buddy Coco Patch Pip Biscuit Peanut Sunny Bubbles Pepper Ziggy Noodle Snowball".split()
THENS = ("Then", "After that", "Soon", "After a while", "A moment later", "Later", "Next")
OPENINGS = (
    "Once upon a time, there was a {hero_adj} {hero_kind} named {hero}.",
    "Once upon a time, in a small town, there lived a {hero_adj} {hero_kind} called {hero}.",
    "There was once a {hero_adj} {hero_kind} named {hero}. {He} lived near {place}.",
    "{hero} was a {hero_adj} {hero_kind} who loved to {activity}.",
    "Once there was a {hero_kind} named {hero}. {hero} was very {hero_adj}.",
    "In a little house by {place}, there lived a {hero_kind} named {hero}.",
)
HABITS = (
    "{He} loved to {activity} every day.",
    "{His} favorite thing was {his} {thing_adj} {thing}.",
    "{He} liked {activity_ing} more than anything.",
    "Every day, {he} went to {place} to {activity}.",
)
GENERIC_MORALS = (
    "{hero} learned that it is good to help your friends.",
    "{hero} learned that kindness is the best gift of all.",
    "{hero} learned that it is okay to ask for help.",
)
# Morals that fit each plot, so the ending depends on the story (something for a model to learn).
PLOT_MORALS = {
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
ENDINGS = (
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
PLOTS: dict[str, tuple[tuple[str, ...], ...]] = {
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
PLOT_NAMES = tuple(PLOTS)
assert set(PLOT_MORALS) == set(PLOTS)
