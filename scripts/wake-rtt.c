// scripts/wake-rtt.c: what idling costs a loopback round trip on this machine.
//
//   cc -O2 -o /tmp/wake-rtt scripts/wake-rtt.c
//   for d in 0 100 200 500 1000; do /tmp/wake-rtt $d 4000; done
//
// Ping-pong of 64 B over loopback TCP (TCP_NODELAY); the server holds each request for
// DELAY_US (nanosleep, timer slack 1 ns) and reports the hold it measured, so the client's
// p50/p90/p99 of (round trip - hold) is the round trip's cost when both sides went idle for
// that long (on a VM: halt and wake of the vCPUs). Used in docs/BENCHMARKS.md (goal 5).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static long long ns(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
static int cmp(const void*a,const void*b){long long x=*(long long*)a,y=*(long long*)b;return x<y?-1:x>y;}
static void full(int fd,void*b,int n,int rd){int d=0;while(d<n){int r=rd?read(fd,(char*)b+d,n-d):write(fd,(char*)b+d,n-d);if(r<=0){perror("io");exit(1);}d+=r;}}
int main(int argc,char**argv){
 if(argc!=3||atoi(argv[2])<100){fprintf(stderr,"usage: %s DELAY_US COUNT(>=100)\n",argv[0]);return 2;}
 int delay_us=atoi(argv[1]),count=atoi(argv[2]);prctl(PR_SET_TIMERSLACK,1);
 int ls=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
 bind(ls,(void*)&a,sizeof a);listen(ls,1);socklen_t l=sizeof a;getsockname(ls,(void*)&a,&l);
 if(fork()==0){prctl(PR_SET_TIMERSLACK,1);int c=accept(ls,0,0);int one=1;setsockopt(c,IPPROTO_TCP,TCP_NODELAY,&one,4);char b[64];
  for(int i=0;i<count;i++){full(c,b,64,1);long long t=ns();if(delay_us){struct timespec s={0,delay_us*1000L};nanosleep(&s,0);}long long h=ns()-t;memcpy(b,&h,8);full(c,b,64,0);}exit(0);}
 int s=socket(AF_INET,SOCK_STREAM,0);connect(s,(void*)&a,sizeof a);int one=1;setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,4);
 long long*o=malloc(8LL*count),*hold=malloc(8LL*count);char b[64]={0};
 for(int i=0;i<count;i++){long long t=ns();full(s,b,64,0);full(s,b,64,1);long long h;memcpy(&h,b,8);o[i]=ns()-t-h;hold[i]=h;}
 qsort(o,count,8,cmp);qsort(hold,count,8,cmp);
 printf("delay %4d us: hold p50 %6.1f us | rtt-hold p50 %6.1f p90 %6.1f p99 %6.1f us\n",delay_us,hold[count/2]/1e3,o[count/2]/1e3,o[count*9/10]/1e3,o[count*99/100]/1e3);return 0;}
