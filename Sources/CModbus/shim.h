#ifndef KILNTALLY_CMODBUS_SHIM_H
#define KILNTALLY_CMODBUS_SHIM_H
#include <modbus.h>
#endif
