#pragma once
#include "../../pyclr_emu_c10.h"
