"""Finding faces in a frame and following them: the detectors, the framing that cuts crops the way training
saw them, tracking, the motion gate and the stream schedule that decides when to pay for detection. Imports core
and model."""
