/* What the generation 1 platform devices need from the VM, as callbacks: they never call
 * KVM. The VM fills this in; unit tests record the calls. Every hook may be NULL (the
 * request is then ignored) and is called from vCPU threads. */
#ifndef HV_PLATFORM_HOOKS_H
#define HV_PLATFORM_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

struct platform_hooks {
	void *opaque;
	/* i440FX PAM register change: [base, base+len) in 0xC0000-0xFFFFF, mode bit0 = read
	 * RAM, bit1 = write RAM (0 = ROM/PCI view). */
	void (*set_pam)(void *opaque, uint64_t base, uint64_t len, unsigned mode);
	void (*request_reset)(void *opaque, const char *cause);	 /* 0xCF9, 0x92 bit0, i8042 0xFE */
	void (*request_poweroff)(void *opaque);			 /* PM1a_CNT SLP_EN with S5 */
	void (*test_exit)(void *opaque, unsigned value);	 /* port 0x501 */
	void (*set_irq)(void *opaque, unsigned gsi, bool level); /* ISA IRQ / GSI line */
};

static inline void platform_set_pam(const struct platform_hooks *h, uint64_t base, uint64_t len,
				    unsigned mode)
{
	if (h && h->set_pam)
		h->set_pam(h->opaque, base, len, mode);
}

static inline void platform_request_reset(const struct platform_hooks *h, const char *cause)
{
	if (h && h->request_reset)
		h->request_reset(h->opaque, cause);
}

static inline void platform_request_poweroff(const struct platform_hooks *h)
{
	if (h && h->request_poweroff)
		h->request_poweroff(h->opaque);
}

static inline void platform_test_exit(const struct platform_hooks *h, unsigned value)
{
	if (h && h->test_exit)
		h->test_exit(h->opaque, value);
}

static inline void platform_set_irq(const struct platform_hooks *h, unsigned gsi, bool level)
{
	if (h && h->set_irq)
		h->set_irq(h->opaque, gsi, level);
}

#endif
