/* A stand-in for Windows' bcryptprimitives.dll, for Wine releases that lack it (Debian 12
 * ships Wine 8.0): Rust's standard library for Windows takes its random bytes from
 * ProcessPrng there, and a program cannot start without it. Test support only: scripts/test
 * puts it beside the cross-built fixture. It asks advapi32's RtlGenRandom, which Wine has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
