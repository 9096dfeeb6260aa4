"""Names of the custom properties TrajPlate reads from Blender data, and their defaults.

The UI edits these properties; the export reads them. Keep every name here so both sides agree.
"""

# Collection whose objects are the shot's entities (when it exists, nothing else is picked automatically).
ENTITY_COLLECTION = "TrajPlate"

# Object custom properties.
PROMPT = "trajplate_prompt"  # str: what this entity is, for the video model ("a red vintage car")
FORWARD_AXIS = "trajplate_forward_axis"  # one of AXES: the object's local axis that points forward
UP_AXIS = "trajplate_up_axis"  # one of AXES: the object's local axis that points up
MARKED_ENTITY = "trajplate_entity"  # bool: the user marked this object as an entity (or, False, excluded it)
COLOR = "trajplate_color"  # [r, g, b] ints 0-255: the entity's colour in previews and masks

# Scene custom properties.
SCENE_PROMPT = "trajplate_scene_prompt"  # str: what happens in the shot
LOCATION_PROMPT = "trajplate_location_prompt"  # str: where it happens

AXES = ("X", "-X", "Y", "-Y", "Z", "-Z")
DEFAULT_FORWARD_AXIS = "-Y"
DEFAULT_UP_AXIS = "Z"
