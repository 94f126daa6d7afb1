#include "CSysShims.h"
