# Turns gen1_layout.h into an ASL include (iasl's preprocessor takes #define but no C
# integer suffixes), so the DSDT uses the same addresses as the devices.
# Usage: cmake -DIN=gen1_layout.h -DOUT=gen1_layout.asi -P asl_layout.cmake
file(READ ${IN} text)
string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" text "${text}") # comments
string(REPLACE ";" "" text "${text}") # not a list separator
string(REGEX REPLACE "\\\\\n[ \t]*" " " text "${text}") # join continued lines
string(REGEX MATCHALL "#define GEN1_[A-Z0-9_]+[ \t]+[^\n]*" defines "${text}")
set(out "// Generated from gen1_layout.h by asl_layout.cmake; do not edit.\n")
foreach(line IN LISTS defines)
	string(STRIP "${line}" line)
	string(REGEX REPLACE "(0x[0-9A-Fa-f]+|[0-9]+)[uUlL]+" "\\1" line "${line}")
	string(REGEX REPLACE "^#define[ \t]+([A-Z0-9_]+)[ \t]+(.*)$" "\\1;\\2" pair "${line}")
	list(GET pair 0 name)
	list(GET pair 1 value)
	set(${name} "${value}")
	string(APPEND out "#define ${name} ${value}\n")
endforeach()
# Resource descriptors take literal numbers, not expressions.
math(EXPR last "${GEN1_PCI_MMIO_END} - 1" OUTPUT_FORMAT HEXADECIMAL)
math(EXPR len "${GEN1_PCI_MMIO_END} - ${GEN1_PCI_HOLE_START}" OUTPUT_FORMAT HEXADECIMAL)
string(APPEND out "#define GEN1_PCI_MMIO_LAST ${last}\n#define GEN1_PCI_MMIO_LEN ${len}\n")
file(WRITE ${OUT} "${out}")
