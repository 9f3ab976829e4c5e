"""Image transforms beyond Lp balls: rotations, shifts, lighting, blur, noise, occlusion, the 15 corruptions, ART's spatial grid."""
